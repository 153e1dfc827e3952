"""`sip_call`: does the PBX complete a call, with audio? One INVITE with an SDP offer (PCMU,
telephone-event), digest on 401/407 as REGISTER does, the ACK of every 2xx, RTP for
`media_s` to the answered address (counting what comes back: an echoing IVR), then BYE.

Owns: the call flow and its asyncio driver (the INVITE client transaction of sip/invite.py,
its timers on the event loop, CANCEL and BYE as non-INVITE transactions of a
`client.SipConnection` on the same transport, a BYE from the far end answered 200), and what
the call means as an outcome. Must not know: sockets (transport.py, media.py) or the
protocol rules themselves (sip/invite.py, sip/sdp.py, sip/rtp.py).

The one promise: **the probe never leaves a call up**. On every exit path — an answer, a
malformed answer, the deadline, an exception, the task being cancelled — it ends what it
started, within `teardown_s`: a BYE for every dialog a 2xx created (forks included), a
CANCEL for an INVITE that got a provisional response (RFC 3261 §9.1), and when the deadline
passed before any provisional, it stops retransmitting and waits up to `teardown_s` for one
to CANCEL (or for a late 2xx to ACK and BYE, or a late final to ACK).

Outcomes: `ok` (answered; RTP came back when `media_s` > 0), `bad_status` (a final non-2xx,
or the credentials rejected), `draining` (503 with Retry-After), `timeout` (no final answer
by `timeout_s`: CANCELed), `no_media` (answered, but not one RTP packet came back from the
answered address), `malformed` (a 2xx without a usable SDP answer or dialog, or only
garbage back), and the transport outcomes. In-dialog requests (ACK, BYE) go over the
INVITE's connection: its next hop (the PBX, the VIP, the outbound proxy) routes them by
their Request-URI and Route set (§12.2.1.1), so they are what a proxy in between expects.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from sipwatch import trace
from sipwatch.errors import ConfigError, SecretError, SipError, SipParseError, TransportError
from sipwatch.media import DEFAULT_DRAIN_S, MediaReport, RtpEndpoint
from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import (
    ProbeContext,
    SipProbeSpec,
    _connect_failed,
    _connect_options,
    _finish,
    _local_failure,
    base_result,
    exchange_result,
    resolve_targets,
)
from sipwatch.probes.kind import ProbeKind
from sipwatch.probes.sip_options import default_from
from sipwatch.sip.flows import new_call_id, new_tag, with_auth
from sipwatch.sip.invite import (
    Action,
    Answered,
    Dialog,
    InviteState,
    InviteTimers,
    InviteTransaction,
    SendCancel,
    TimedOut,
    Transmit,
    build_ack_2xx,
    build_ack_non2xx,
    build_bye,
    build_cancel,
    dialog_from_2xx,
    header_tag,
    name_addr_uri,
)
from sipwatch.sip.message import Headers, Message, Request, Response, build_request
from sipwatch.sip.sdp import SdpError, StreamRejected, build_offer, parse_answer
from sipwatch.sip.target import Target
from sipwatch.sip.transaction import Exchange, new_branch
from sipwatch.sip.transport import SipTransport, connect

if TYPE_CHECKING:
    from sipwatch.sip.client import SipConnection
    from sipwatch.sip.digest import Credentials

METHOD = "INVITE"
_CREDENTIALS = ("authorization", "proxy-authorization")


@dataclass(frozen=True, kw_only=True, slots=True)
class SipCallSpec(SipProbeSpec):
    """`uri` is what to call (sip:ivr@pbx: an IVR or echo extension). `timeout_s`: the
    deadline for a final answer; `media_s`: seconds of RTP once answered (0: signalling
    only); `teardown_s`: the budget for ending the call (the BYE, or the CANCEL and its
    487), spent on every exit path."""

    kind: Literal["sip_call"] = "sip_call"
    timeout_s: float = 5.0
    interval_s: float = 60.0
    media_s: float = 1.0
    teardown_s: float = 2.0

    def __post_init__(self) -> None:
        SipProbeSpec.__post_init__(self)
        if not 0 <= self.media_s <= 30:
            raise ValueError("media_s must be between 0 and 30")
        if not 0 < self.teardown_s <= 10:
            raise ValueError("teardown_s must be > 0 and <= 10")


def budget(spec: SipCallSpec) -> float:
    """The longest a call can take: the answer (or the wait for a late provisional), the
    CANCEL's wait, media and its drain, the BYE."""
    return spec.timeout_s + 2 * spec.teardown_s + spec.media_s + DEFAULT_DRAIN_S + 1.0


def _reply(request: Request, code: int, reason: str) -> bytes:
    """A response to a request from the far end (RFC 3261 §8.2.6.2): Via, From, To, Call-ID
    and CSeq copied, no body."""
    items: list[tuple[str, str]] = [("Via", v) for v in request.header_all("Via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.header(name)
        if value is not None:
            items.append((name, value))
    items.append(("Content-Length", "0"))
    return Response(Headers(tuple(items)), b"", status_code=code, reason=reason).to_bytes()


def _fallback_dialog(invite: Request, response: Response) -> Dialog:
    """A 2xx that cannot make a dialog (§12.1.2: no Contact, no To tag...) is still ACKed and
    BYE'd, to the INVITE's Request-URI: the far end may have a call up all the same."""
    via = invite.top_via
    return Dialog(
        call_id=invite.call_id,
        local_uri=name_addr_uri(invite.header("From") or ""),
        local_tag=header_tag(invite.header("From") or "") or "",
        remote_uri=name_addr_uri(response.header("To") or invite.header("To") or ""),
        remote_tag=header_tag(response.header("To") or "") or "",
        remote_target=invite.uri,
        route_set=(),
        invite_cseq=invite.cseq[0],
        transport=via.transport.lower(),
        local=(via.host, via.port),
        credentials=tuple((k, v) for k, v in invite.headers if k.lower() in _CREDENTIALS),
    )


class _Leg:
    """The Listener of the call's transport: responses to our INVITEs and requests from the
    far end go to the call, every other response to the SipConnection carrying CANCEL/BYE."""

    def __init__(self, call: _Call, peer: str) -> None:
        self.call = call
        self.peer = peer
        self.transport: SipTransport | None = None
        self.inner: SipConnection | None = None

    def send(self, data: bytes) -> None:
        self.call.record("sent", self.peer, data)
        if self.transport is not None:
            self.transport.send(data)

    def on_message(self, message: Message) -> None:
        if isinstance(message, Request):
            self.call.record("received", self.peer, message.to_bytes())
            self.call.on_request(message)
        elif self.call.owns(message):
            self.call.record("received", self.peer, message.to_bytes())
            self.call.on_invite_response(message)
        elif self.inner is not None:
            self.inner.on_message(message)

    def on_malformed(self, error: SipParseError, branch: str | None) -> None:
        self.call.on_malformed(error)
        if self.inner is not None:
            self.inner.on_malformed(error, branch)

    def on_error(self, kind: str, detail: str) -> None:
        self.call.on_error(kind, detail)
        if self.inner is not None:
            self.inner.on_error(kind, detail)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        elif self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class _Ended:
    bye_status: int | str | None = None  # the BYE's final status, or why it had none
    by: str = ""  # "us" or "remote"


class _Call:
    """One call: its INVITE transactions (one more per digest retry), the dialogs their 2xx
    created, and ending them."""

    def __init__(self, spec: SipCallSpec, ctx: ProbeContext, leg_peer: str) -> None:
        self.spec = spec
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.leg = _Leg(self, leg_peer)
        self._trace = trace.current()
        self.changed = asyncio.Event()
        self.remote_bye = asyncio.Event()
        self.remote_bye_at: float | None = None
        self.txs: list[InviteTransaction] = []
        self.dialog: Dialog | None = None
        self.dialog_error = ""
        self.ack: bytes | None = None
        self.acks = 0
        self.forks: dict[str, bytes] = {}  # other To tags: their ACK
        self.cancel_sent = False
        self.cancel_status: int | str | None = None
        self.late_final: Response | None = None
        self.malformed: tuple[float, str] | None = None
        self.transport_error: tuple[str, str] | None = None
        self.ended = _Ended()
        self.stray = 0  # responses for our branch with another Call-ID
        self.credentials: Credentials | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None

    # -- what the leg hands over ------------------------------------------------------------
    def record(self, direction: str, peer: str, data: bytes) -> None:
        if self._trace is not None:
            self._trace.record(direction, peer, data)

    def owns(self, response: Response) -> bool:
        return any(tx.matches(response) for tx in self.txs)

    def on_invite_response(self, response: Response) -> None:
        tx = next(t for t in self.txs if t.matches(response))
        if response.call_id != tx.request.call_id:
            self.stray += 1  # our branch, someone else's call: not an answer to us
            return
        now = self.loop.time()
        if tx.state is InviteState.TERMINATED and tx.timed_out and tx.first_provisional_at is None:
            self._late(tx, response)
        else:
            self._apply(tx, tx.on_response(response, now))
        self._schedule()
        self.changed.set()

    def on_request(self, request: Request) -> None:
        if request.method == "ACK":
            return
        ours = self.dialog is not None and request.call_id == self.dialog.call_id
        if request.method == "BYE" and ours:
            self.leg.send(_reply(request, 200, "OK"))  # §15.1.2
            if self.remote_bye_at is None and self.ended.by != "us":  # not after our BYE
                self.remote_bye_at = self.loop.time()
                self.ended = _Ended(None, "remote")
                self.remote_bye.set()
                self.changed.set()
        elif request.method in ("BYE", "CANCEL") or not ours:
            self.leg.send(_reply(request, 481, "Call/Transaction Does Not Exist"))
        else:  # a re-INVITE, UPDATE, INFO...: the probe changes nothing in its call
            self.leg.send(_reply(request, 501, "Not Implemented"))

    def on_malformed(self, error: SipParseError) -> None:
        self.malformed = (self.loop.time(), str(error))
        self.record("note", self.leg.peer, f"unparsable reply: {error}".encode())

    def on_error(self, kind: str, detail: str) -> None:
        self.transport_error = (kind, detail)
        for tx in self.txs:
            tx.on_transport_error(detail)
        self._schedule()
        self.changed.set()

    # -- the INVITE transactions -----------------------------------------------------------
    def start(self, request: Request, deadline: float) -> InviteTransaction:
        timers = InviteTimers(
            t1_s=self.ctx.timers.t1_s, timer_d_s=self.spec.teardown_s,
            cancel_wait_s=self.spec.teardown_s,
        )  # fmt: skip
        assert self.leg.transport is not None
        tx = InviteTransaction(request, self.leg.transport.reliable, timers, deadline)
        self.txs.append(tx)
        self._apply(tx, tx.start(self.loop.time()))
        self._schedule()
        return tx

    def _apply(self, tx: InviteTransaction, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self.leg.send(action.data)
            elif isinstance(action, SendCancel):
                self._cancel(action.request)
            elif isinstance(action, Answered):
                self._answered(tx.request, action.response)
            # Provisional, Rejected, TimedOut: the waiter reads the transaction's state.

    def _schedule(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        pending = [t for t in (tx.next_timer() for tx in self.txs) if t is not None]
        if pending:
            self._handle = self.loop.call_at(min(pending), self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = self.loop.time()
        for tx in list(self.txs):
            when = tx.next_timer()
            if when is not None and when <= now:
                actions = tx.on_timer(now)
                self._apply(tx, actions)
                if any(isinstance(a, TimedOut) for a in actions):
                    self.changed.set()
        self._schedule()
        self.changed.set()

    def _answered(self, invite: Request, response: Response) -> None:
        """ACK this 2xx (§13.2.2.4; RFC 6026 §7.2: each one, retransmissions included)."""
        tag = header_tag(response.header("To") or "") or ""
        if self.dialog is None:
            try:
                self.dialog = dialog_from_2xx(invite, response)
            except SipParseError as exc:
                self.dialog_error = str(exc)
                self.dialog = _fallback_dialog(invite, response)
            self.ack = build_ack_2xx(self.dialog, new_branch()).to_bytes()
        if tag == self.dialog.remote_tag:
            assert self.ack is not None
            self.leg.send(self.ack)
            self.acks += 1
            return
        # RFC 6026 §7.2 / §13.2.2.4: another fork answered too: ACK it, then end it.
        ack = self.forks.get(tag)
        if ack is None:
            try:
                fork = dialog_from_2xx(invite, response)
            except SipParseError:
                return  # nothing to address a BYE to; its own retransmissions stop at M
            ack = build_ack_2xx(fork, new_branch()).to_bytes()
            self.forks[tag] = ack
            self.leg.send(ack)
            self._spawn(self._bye(fork))
        else:
            self.leg.send(ack)

    def _late(self, tx: InviteTransaction, response: Response) -> None:
        """After the deadline passed with no provisional: a 1xx now can be CANCELed, a 2xx
        is ACKed (and BYE'd by the caller), a non-2xx final is ACKed (§17.1.1.3)."""
        if response.is_provisional:
            if not self.cancel_sent:
                self._cancel(build_cancel(tx.request))
        elif 200 <= response.status_code < 300:
            self._answered(tx.request, response)
        else:
            self.leg.send(build_ack_non2xx(tx.request, response).to_bytes())
            self.late_final = self.late_final or response

    def _cancel(self, request: Request) -> None:
        self.cancel_sent = True
        self._spawn(self._run_cancel(request))

    async def _run_cancel(self, request: Request) -> None:
        assert self.leg.inner is not None
        until = self.loop.time() + self.spec.teardown_s
        ex = await self.leg.inner.transact(request, deadline=until)
        self.cancel_status = ex.response.status_code if ex.response else ex.failure
        self.changed.set()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- ending it ---------------------------------------------------------------------------
    async def _bye(self, dialog: Dialog) -> int | str:
        """BYE (§15.1.1), with digest on 401/407 (RFC 3261 §22.2); its status or failure."""
        assert self.leg.inner is not None

        def factory(cseq: int, branch: str, extra: Any) -> Request:
            return build_bye(dialog, branch, cseq=cseq, headers=extra)

        uri = build_bye(dialog, "z9hG4bKx").uri
        flow = with_auth(
            factory, method="BYE", uri=uri, credentials=self.credentials,
            first_cseq=dialog.invite_cseq + 1,
        )  # fmt: skip
        exchange, _, _ = await self.leg.inner.run(
            flow, deadline=self.loop.time() + self.spec.teardown_s
        )
        if exchange.response is not None:
            return exchange.response.status_code
        return exchange.failure or "timeout"

    async def end(self) -> None:
        """BYE the dialog unless it is ended (or being ended) already."""
        if self.dialog is not None and not self.ended.by:
            self.ended = _Ended("pending", "us")  # a second end() must not BYE again
            self.ended = _Ended(await self._bye(self.dialog), "us")

    async def hang_up(self) -> None:
        """End whatever is still up, bounded by teardown_s; runs after the call on every
        path (an exception, the task cancelled). Safe to call more than once."""
        await self.end()
        cancelled: list[InviteTransaction] = []
        for tx in self.txs:
            if tx.state is InviteState.PROCEEDING and not tx.done:
                self._apply(tx, tx.cancel(self.loop.time()))
                cancelled.append(tx)
            elif tx.state is InviteState.CALLING:
                tx.abandon()  # §9.1: no CANCEL before a provisional; stop retransmitting
        self._schedule()
        until = self.loop.time() + self.spec.teardown_s
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.spec.teardown_s)
        # The CANCELed INVITE's 487 (ACKed by its transaction), or a 2xx that raced the
        # CANCEL (ACKed, then BYE'd here).
        await self.wait_for(lambda: all(tx.done for tx in cancelled), until)
        await self.end()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        for task in self._tasks:
            task.cancel()
        self.leg.close()

    async def wait_for(self, condition: Callable[[], bool], until: float) -> bool:
        """Wait until `condition()` or loop time `until`; True if the condition holds."""
        while not condition():
            left = until - self.loop.time()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return condition()
        return True


def _done(tx: InviteTransaction) -> Callable[[], bool]:
    return lambda: tx.done


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000, 1)


def _media_extra(report: MediaReport | None) -> dict[str, Any]:
    if report is None:
        return {
            "rtp_sent": 0, "rtp_received": 0, "rtp_loss_pct": None, "jitter_ms": None,
            "max_gap_ms": None,
        }  # fmt: skip
    loss = report.round_trip_loss_pct if report.echoed else report.loss_pct
    if report.received == 0 and report.sent:
        loss = 100.0  # nothing back: §A.3 has no sequence numbers to count from
    return {
        "rtp_sent": report.sent,
        "rtp_received": report.received,
        "rtp_loss_pct": loss,
        "jitter_ms": report.jitter_ms,
        "max_gap_ms": report.max_gap_ms,
        "rtp_echoed": report.echoed,
        "rtp_unexpected_source": report.unexpected_source,
        "first_rtp_ms": report.first_rtp_ms,
        "rtp_late_slots": report.late_slots,  # our sender fell behind (a loaded host)
    }


async def _place(
    spec: SipCallSpec, ctx: ProbeContext, target: Target, call: _Call, rtp: RtpEndpoint
) -> ProbeResult:
    """The call itself; `call.hang_up()` runs after it on every path."""
    leg = call.leg
    assert leg.transport is not None and leg.inner is not None
    transport = leg.transport
    call.credentials = spec.credentials()
    local = transport.sent_by
    media_ip, media_port = rtp.local_address
    offer = build_offer(media_ip, media_port, session_id=int.from_bytes(os.urandom(4)))
    aor = spec.parsed_uri.without_params()
    request_uri = str(aor)
    from_uri = default_from(spec, local)
    tname = transport.name
    tparam = {"udp": "", "wss": ";transport=ws"}.get(tname, f";transport={tname}")
    contact = f"<sip:sipwatch@{_hostport(local)}{tparam}>"
    call_id, tag = new_call_id(), new_tag()

    def invite(cseq: int, auth: tuple[tuple[str, str], ...]) -> Request:
        return build_request(
            METHOD, request_uri, transport=tname, local=local, from_uri=from_uri,
            to_uri=request_uri, call_id=call_id, from_tag=tag, cseq=cseq, branch=new_branch(),
            headers=(
                *spec.route_headers(), *auth, ("Contact", contact),
                ("Allow", "INVITE, ACK, CANCEL, BYE"), ("User-Agent", ctx.user_agent),
                ("Content-Type", "application/sdp"),
            ),
            body=offer,
        )  # fmt: skip

    loop = call.loop
    t0 = loop.time()
    deadline = t0 + spec.timeout_s
    cseq, retries, auth_error = 1, 0, ""
    tx = call.start(invite(cseq, ()), deadline)
    while True:
        await call.wait_for(_done(tx), deadline + 2 * spec.teardown_s + 1)
        final = tx.final
        if final is None or final.status_code not in (401, 407) or call.credentials is None:
            break
        from sipwatch.errors import DigestError
        from sipwatch.sip import digest

        proxy = final.status_code == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenge = digest.choose_challenge(final.header_all(name), proxy=proxy)
        except DigestError as exc:
            auth_error = f"cannot answer the challenge: {exc}"
            break
        if (retries == 1 and not challenge.stale) or retries >= 2:
            auth_error = "credentials rejected"
            break
        value = digest.authorization(challenge, call.credentials, METHOD, request_uri)
        cseq, retries = cseq + 1, retries + 1
        header = "Proxy-Authorization" if proxy else "Authorization"
        tx = call.start(invite(cseq, ((header, value),)), deadline)

    first = call.txs[0]
    extra: dict[str, Any] = {
        "pdd_ms": _ms(t0, next((t.first_ringing_at for t in call.txs if t.first_ringing_at), None)),
        "answer_ms": None,
        **_media_extra(None),
        "bye_status": None,
        "call_id": call_id,
    }
    common: dict[str, Any] = {
        "transport": target.transport,
        "resolved": str(target),
        "retransmissions": sum(t.retransmissions for t in call.txs),
    }

    def result(outcome: Outcome, detail: str, **kw: Any) -> ProbeResult:
        return base_result(spec, METHOD, outcome, detail=detail, extra=extra, **common, **kw)

    final = tx.final
    if call.cancel_sent:  # the 487 may overtake the CANCEL's own answer: wait for it too
        await call.wait_for(lambda: call.cancel_status is not None, loop.time() + spec.teardown_s)
    if final is None:
        if tx.transport_error or call.transport_error:
            kind, why = call.transport_error or ("refused", tx.transport_error)
            return result(Outcome(kind), why)
        if tx.first_provisional_at is None and not call.cancel_sent:
            # The deadline passed before any provisional: §9.1 forbids a CANCEL now. Wait,
            # bounded, for a provisional to CANCEL (or a late answer to ACK and end).
            await call.wait_for(
                lambda: call.late_final is not None or call.dialog is not None
                or (call.cancel_sent and call.cancel_status is not None),
                loop.time() + spec.teardown_s,
            )  # fmt: skip
        if call.dialog is None:
            garbage = call.malformed
            if garbage is not None and garbage[0] >= t0 and first.first_provisional_at is None:
                return result(Outcome.MALFORMED, f"only unparsable replies: {garbage[1]}")
            what = "no final answer" if tx.first_provisional_at else "no answer at all"
            note = _cancel_note(call, tx)
            return result(Outcome.TIMEOUT, f"{what} within {spec.timeout_s:g} s{note}")
    rtt = _ms(t0, tx.final_at) if final is not None else None
    status = {"status_code": final.status_code, "reason": final.reason} if final else {}
    if final is not None and not 200 <= final.status_code < 300:
        if auth_error or final.status_code in (401, 407):
            why = auth_error or "authentication required and no credentials configured"
            return result(Outcome.BAD_STATUS, why, rtt_ms=rtt, **status)
        if call.cancel_sent and final.status_code == 487:
            note = _cancel_note(call, tx)
            return result(
                Outcome.TIMEOUT, f"no final answer within {spec.timeout_s:g} s{note}", **status
            )
        ex = Exchange(tx.request, final, None, "", None if rtt is None else rtt / 1000, 0)
        mapped = exchange_result(spec, target, ex, extra=extra)
        return replace(mapped, retransmissions=common["retransmissions"])

    # Answered (perhaps only after the deadline: the call is ended all the same).
    answered_at = tx.final_at if final is not None else loop.time()
    extra["answer_ms"] = _ms(t0, answered_at)
    assert call.dialog is not None
    answer = call.txs[-1].final or final
    if call.cancel_sent or final is None:
        await call.end()
        extra["bye_status"] = call.ended.bye_status
        return result(
            Outcome.TIMEOUT,
            f"answered only after the {spec.timeout_s:g} s deadline: ACKed and ended (BYE)",
            rtt_ms=rtt, **status,
        )  # fmt: skip
    assert answer is not None
    problem = f"2xx cannot establish a dialog: {call.dialog_error}" if call.dialog_error else ""
    report: MediaReport | None = None
    no_media = ""
    if not problem:
        try:
            audio = parse_answer(answer.body)
        except StreamRejected as exc:
            no_media = str(exc)
        except SdpError as exc:
            problem = f"2xx carries no usable SDP answer: {exc}"
        else:
            if spec.media_s > 0:
                report = await rtp.run(
                    (audio.address, audio.port), spec.media_s, stop=call.remote_bye
                )
                extra.update(_media_extra(report))
                if report.received == 0:
                    no_media = _why_no_media(report, audio.address, audio.port)
    await call.end()
    extra["bye_status"] = call.ended.bye_status
    extra["ended_by"] = call.ended.by
    extra["acks"] = call.acks
    ended = ""
    if call.ended.by == "remote" and call.remote_bye_at is not None:
        ended = f"; the far end ended the call {call.remote_bye_at - t0:.2f} s after the INVITE"
    bye = call.ended.bye_status
    bye_note = "" if call.ended.by == "remote" or bye == 200 else f"; BYE answered {bye}"
    if problem:
        return result(Outcome.MALFORMED, problem + ended + bye_note, rtt_ms=rtt, **status)
    if no_media:
        return result(Outcome.NO_MEDIA, no_media + ended + bye_note, rtt_ms=rtt, **status)
    got = "signalling only" if report is None else f"RTP {report.received}/{report.sent} back"
    return result(Outcome.OK, f"answered, {got}{ended}{bye_note}", rtt_ms=rtt, **status)


def _why_no_media(report: MediaReport, host: str, port: int) -> str:
    why = f"answered, but no RTP came back from {host}:{port} ({report.sent} packets sent)"
    if report.unexpected_source:
        why += f"; {report.unexpected_source} from elsewhere ({report.unexpected_from}) ignored"
    if report.icmp_errors:
        why += f"; {report.icmp_errors} ICMP errors (media port closed?)"
    return why


def _cancel_note(call: _Call, tx: InviteTransaction) -> str:
    if not call.cancel_sent:
        return "; nothing to CANCEL (no provisional response)"
    note = f"; CANCEL answered {call.cancel_status}"
    final = tx.final or call.late_final
    if final is not None:
        note += f", {final.status_code} ACKed"
    return note


def _hostport(sent_by: tuple[str, int | None]) -> str:
    from sipwatch.sip.message import format_hostport

    return format_hostport(*sent_by)


async def _one_target(spec: SipCallSpec, ctx: ProbeContext, target: Target) -> ProbeResult:
    from sipwatch.sip.client import SipConnection

    loop = asyncio.get_running_loop()
    started = loop.time()
    options = _connect_options(spec, ctx)
    options.pop("timers")
    call = _Call(spec, ctx, f"{target.transport} {target.host}:{target.port}")
    try:
        transport = await connect(target.transport, target.host, target.port, call.leg, **options)
    except TransportError as exc:
        return _connect_failed(spec, METHOD, target, exc, loop.time() - started)
    call.leg.transport = transport
    call.leg.inner = SipConnection(transport, ctx.timers)
    rtp: RtpEndpoint | None = None
    try:
        rtp = await RtpEndpoint.open(transport.local[0])
        try:
            result = await _place(spec, ctx, target, call, rtp)
        finally:
            await call.hang_up()  # never a call left up: BYE or CANCEL, bounded
    except OSError as exc:
        result = _local_failure(spec, METHOD, target, ConfigError(f"cannot open RTP: {exc}"))
    except (SecretError, ConfigError) as exc:
        result = _local_failure(spec, METHOD, target, exc)
    except SipParseError as exc:
        result = base_result(
            spec, METHOD, Outcome.MALFORMED, transport=target.transport,
            resolved=str(target), detail=f"unparsable reply: {exc}",
        )  # fmt: skip
    finally:
        if rtp is not None:
            rtp.close()
        call.close()
    return _finish(spec, result, transport.local, transport.peer_cert_not_after)


async def probe(spec: SipCallSpec, ctx: ProbeContext) -> ProbeResult:
    """Place one call to the first RFC 3263 target (a call to each would be N calls)."""
    try:
        targets = await asyncio.wait_for(resolve_targets(spec.next_hop, ctx), spec.timeout_s)
    except TimeoutError:
        return base_result(
            spec, METHOD, Outcome.DNS_ERROR,
            detail=f"DNS resolution took longer than {spec.timeout_s:g} s",
        )  # fmt: skip
    except SipError as exc:
        local = getattr(exc, "is_local", False)
        outcome = Outcome.LOCAL_ERROR if local else Outcome.DNS_ERROR
        return base_result(spec, METHOD, outcome, detail=str(exc))
    return await _one_target(spec, ctx, targets[0])


KIND = ProbeKind(name="sip_call", spec=SipCallSpec, probe=probe, budget=budget)
