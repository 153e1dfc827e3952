"""The INVITE client transaction of RFC 3261 §17.1.1 as amended by RFC 6026, and the requests
a caller builds around it (ACK, CANCEL, BYE), sans-IO.

Owns: the state machine (Calling, Proceeding, Accepted, Completed, Terminated), Timers A, B,
D and M, the transaction's own ACK for a non-2xx final response (§17.1.1.3), the CANCEL rule
of §9.1 (only once a provisional response arrived), and the dialog a 2xx creates (§12.1.2)
with the requests sent inside it: the ACK for a 2xx (§13.2.2.4) and BYE (§15.1.1).
Must not know: sockets, asyncio, the wall clock, or what a probe concludes from a call.
Every method that depends on time takes `now` (seconds, any monotonic origin).

The transaction reports what to do as a list of actions, in order:
- `Transmit(data)`: bytes for the transaction's next hop (the INVITE, its retransmissions,
  and the ACK for a non-2xx final, which goes where the INVITE went).
- `SendCancel(request)`: a CANCEL for the caller to run as a non-INVITE client transaction
  (`transaction.ClientTransaction`) to the same next hop.
- `Provisional(response)`, `Answered(response, retransmission)`, `Rejected(response)`,
  `TimedOut(detail)`: what the caller (the TU) learns. RFC 6026 §7.2: in Accepted every 2xx,
  retransmissions and 2xx from other forks included, is passed up, and the TU ACKs each one
  end to end (`build_ack_2xx`); the transaction never ACKs a 2xx itself.

Timers (§17.1.1.2, RFC 6026 §8.4, Table 4 of §A):
- Timer A (unreliable transports only): T1, doubling without a cap, while Calling.
- Timer B: 64*T1, or the caller's deadline if that comes first, while Calling.
- Timer D: `timer_d_s` (RFC: at least 32 s on UDP; a probe passes less) after a non-2xx
  final on unreliable transports, zero on reliable ones: absorbs retransmitted finals.
- Timer M: 64*T1 in Accepted: absorbs retransmitted 2xx.
- `max_answers`: at most this many 2xx (retransmissions and forks included) are passed up
  in Accepted; the rest are absorbed silently. RFC 6026 bounds nothing here, and a far end
  that answers each ACK with its 200 again (sipp does: seen ~23,000 times in 15 s) would
  otherwise ping-pong with a caller that ACKs every 2xx until Timer M.
- The deadline in Proceeding: a provisional stops Timer B (the RFC then waits for ever); a
  probe cannot, so at the deadline the transaction asks for a CANCEL, then gives the final
  response `cancel_wait_s` (64*T1 by default, §9.1) to arrive before it gives up.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sipwatch.errors import SipParseError, SipUriError
from sipwatch.sip.message import Headers, Request, Response, format_hostport, split_commas
from sipwatch.sip.transaction import BRANCH_MAGIC
from sipwatch.sip.uri import parse_uri

MAX_FORWARDS = "70"
#: Headers the ACK of a 2xx must carry from the INVITE (§13.2.2.4: "the same credentials").
_CREDENTIALS = ("authorization", "proxy-authorization")


@dataclass(frozen=True, slots=True)
class InviteTimers:
    t1_s: float = 0.5  # RTT estimate (§17.1.1.1)
    timer_d_s: float = 32.0  # §17.1.1.2: "at least 32 seconds for unreliable transports"
    cancel_wait_s: float | None = None  # after a CANCEL; None: 64*T1 (§9.1)
    max_answers: int = 32  # 2xx passed up (and so ACKed) per transaction, the first included

    def __post_init__(self) -> None:
        if self.max_answers < 1:
            raise ValueError("max_answers must be >= 1")
        if not self.t1_s > 0:
            raise ValueError("t1_s must be > 0")
        if self.timer_d_s < 0:
            raise ValueError("timer_d_s must be >= 0")
        if self.cancel_wait_s is not None and self.cancel_wait_s < 0:
            raise ValueError("cancel_wait_s must be >= 0")


class InviteState(enum.Enum):
    INITIAL = "initial"  # built, not sent yet
    CALLING = "calling"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"  # RFC 6026 §7.1
    COMPLETED = "completed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Transmit:
    """Bytes for the transaction's next hop."""

    data: bytes
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Run this CANCEL as a non-INVITE client transaction to the INVITE's next hop."""

    request: Request


@dataclass(frozen=True, slots=True)
class Provisional:
    response: Response


@dataclass(frozen=True, slots=True)
class Answered:
    """A 2xx: the TU must ACK it (`build_ack_2xx`), each one, retransmissions included."""

    response: Response
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """The first non-2xx final response; its ACK is in the same list of actions."""

    response: Response


@dataclass(frozen=True, slots=True)
class TimedOut:
    detail: str


Action = Transmit | SendCancel | Provisional | Answered | Rejected | TimedOut


@dataclass(slots=True)
class InviteTransaction:
    """One INVITE client transaction. `start(now)`, then feed it `on_response()` for the
    responses that `matches()` and `on_timer(now)` whenever `next_timer()` is due."""

    request: Request
    reliable: bool
    timers: InviteTimers = field(default_factory=InviteTimers)
    deadline: float | None = None  # absolute; caps Timer B, and CANCELs in Proceeding

    state: InviteState = InviteState.INITIAL
    branch: str = ""
    retransmissions: int = 0
    first_sent_at: float | None = None
    first_provisional_at: float | None = None  # any 1xx
    first_ringing_at: float | None = None  # first 18x (post-dial delay ends here)
    final_at: float | None = None
    provisional: Response | None = None  # the last one
    final: Response | None = None  # the first final response
    answers: int = 0  # 2xx received, retransmissions included
    absorbed: int = 0  # 2xx beyond timers.max_answers: neither passed up nor ACKed
    timed_out: bool = False
    cancel_requested: bool = False
    cancel_sent: bool = False
    transport_error: str = ""
    _timer_a: float | None = None
    _interval_a: float = 0.0
    _timer_b: float | None = None
    _timer_d: float | None = None
    _timer_m: float | None = None
    _timer_deadline: float | None = None  # Proceeding: CANCEL at the deadline
    _timer_cancel: float | None = None  # after the CANCEL: give up waiting for the final
    _ack: bytes | None = None

    def __post_init__(self) -> None:
        if self.request.method != "INVITE":
            raise ValueError("this is the INVITE client transaction (§17.1.1)")
        branch = self.request.top_via.branch
        if not branch or not branch.startswith(BRANCH_MAGIC):
            raise ValueError("request needs a top Via with an RFC 3261 branch (z9hG4bK...)")
        self.branch = branch

    @property
    def key(self) -> tuple[str, str]:
        return self.branch, "INVITE"

    @property
    def done(self) -> bool:
        """True once the TU has its answer: a final response, a timeout or a transport
        error. The transaction may live on (Accepted, Completed) to absorb retransmissions."""
        return self.final is not None or self.timed_out or bool(self.transport_error)

    def start(self, now: float) -> list[Action]:
        """Enter Calling; send the INVITE (§17.1.1.2)."""
        if self.state is not InviteState.INITIAL:
            raise RuntimeError("transaction already started")
        self.state = InviteState.CALLING
        self.first_sent_at = now
        fire_b = now + 64 * self.timers.t1_s
        if self.deadline is not None:
            fire_b = min(fire_b, self.deadline)
        self._timer_b = fire_b
        if not self.reliable:  # §17.1.1.2: Timer A only for unreliable transports
            self._interval_a = self.timers.t1_s
            self._timer_a = now + self._interval_a
        return [Transmit(self.request.to_bytes())]

    def next_timer(self) -> float | None:
        """When `on_timer` must next be called, or None when nothing is pending."""
        pending = [
            t
            for t in (
                self._timer_a,
                self._timer_b,
                self._timer_d,
                self._timer_m,
                self._timer_deadline,
                self._timer_cancel,
            )
            if t is not None
        ]
        return min(pending) if pending else None

    def on_timer(self, now: float) -> list[Action]:
        """Fire every timer due at `now`."""
        if self._timer_d is not None and now >= self._timer_d:
            self._terminate()  # §17.1.1.2: Timer D, Completed -> Terminated
            return []
        if self._timer_m is not None and now >= self._timer_m:
            self._terminate()  # RFC 6026 §8.4: Timer M, Accepted -> Terminated
            return []
        if self.state is InviteState.CALLING:
            if self._timer_b is not None and now >= self._timer_b:
                # Timer B wins over a simultaneous Timer A: nothing is sent after giving up.
                waited = now - (self.first_sent_at or now)
                return self._time_out(f"no response to INVITE after {waited:.3f} s")
            if self._timer_a is not None and now >= self._timer_a:
                self._interval_a *= 2  # §17.1.1.2: 2*T1, 4*T1, ... no T2 cap for INVITE
                self._timer_a = now + self._interval_a
                self.retransmissions += 1
                return [Transmit(self.request.to_bytes(), retransmission=True)]
            return []
        if self.state is InviteState.PROCEEDING:
            if self._timer_cancel is not None and now >= self._timer_cancel:
                return self._time_out("no final response after CANCEL")
            if self._timer_deadline is not None and now >= self._timer_deadline:
                self._timer_deadline = None
                return self._send_cancel(now)
        return []

    def matches(self, response: Response) -> bool:
        """§17.1.3: top Via branch equal to the INVITE's and CSeq method INVITE (a response
        to our CANCEL has the same branch but CSeq method CANCEL)."""
        try:
            return response.top_via.branch == self.branch and response.cseq[1] == "INVITE"
        except SipParseError:
            return False

    def on_response(self, response: Response, now: float) -> list[Action]:
        """Feed a response that `matches()`."""
        code = response.status_code
        if self.state in (InviteState.CALLING, InviteState.PROCEEDING):
            if response.is_provisional:
                self.provisional = response
                if self.first_provisional_at is None:
                    self.first_provisional_at = now
                if 180 <= code < 190 and self.first_ringing_at is None:
                    self.first_ringing_at = now
                actions: list[Action] = []
                if self.state is InviteState.CALLING:
                    # §17.1.1.2: Proceeding stops retransmissions; Timer B is not used there
                    # (the deadline, if any, takes over).
                    self.state = InviteState.PROCEEDING
                    self._timer_a = self._timer_b = None
                    if self.cancel_requested and not self.cancel_sent:
                        actions += self._send_cancel(now)  # §9.1: deferred until now
                    elif self.deadline is not None:
                        self._timer_deadline = self.deadline
                return [*actions, Provisional(response)]
            self.final = response
            self.final_at = now
            self._timer_a = self._timer_b = self._timer_deadline = self._timer_cancel = None
            if 200 <= code < 300:
                # RFC 6026 §7.1: Accepted, Timer M; the TU ACKs the 2xx.
                self.answers += 1
                self.state = InviteState.ACCEPTED
                self._timer_m = now + 64 * self.timers.t1_s
                return [Answered(response)]
            # §17.1.1.3: ACK the non-2xx ourselves, then Completed with Timer D.
            ack = build_ack_non2xx(self.request, response).to_bytes()
            self._ack = ack
            self.state = InviteState.COMPLETED
            if self.reliable:
                self._terminate()
            else:
                self._timer_d = now + self.timers.timer_d_s
            return [Transmit(ack), Rejected(response)]
        if self.state is InviteState.ACCEPTED and 200 <= code < 300:
            if self.answers >= self.timers.max_answers:
                self.absorbed += 1  # a ping-pong with the far end: stop feeding it
                return []
            self.answers += 1  # RFC 6026 §7.2: every 2xx goes to the TU
            return [Answered(response, retransmission=True)]
        if self.state is InviteState.COMPLETED and code >= 300 and self._ack is not None:
            # §17.1.1.2: a retransmitted final is ACKed again, not passed up.
            return [Transmit(self._ack, retransmission=True)]
        return []  # e.g. a 1xx after the final, a non-2xx in Accepted: discarded

    def cancel(self, now: float) -> list[Action]:
        """The TU gives up waiting (its deadline, a shutdown). §9.1: a CANCEL is sent only
        once a provisional response arrived; before that it is deferred until one does (and
        Timer B still ends the transaction if none does). No effect once final."""
        if self.done or self.cancel_requested:
            return []
        self.cancel_requested = True
        if self.state is InviteState.PROCEEDING:
            return self._send_cancel(now)
        return []

    def on_transport_error(self, detail: str) -> None:
        """§17.1.1.2: a transport failure in Calling or Proceeding ends the transaction."""
        if self.state in (InviteState.INITIAL, InviteState.CALLING, InviteState.PROCEEDING):
            self.transport_error = detail
            self._terminate()

    def abandon(self) -> None:
        """Stop every timer and send nothing more (the TU is done with the transaction)."""
        self._terminate()

    def _send_cancel(self, now: float) -> list[Action]:
        self.cancel_requested = self.cancel_sent = True
        self._timer_deadline = None
        wait = self.timers.cancel_wait_s
        self._timer_cancel = now + (64 * self.timers.t1_s if wait is None else wait)
        return [SendCancel(build_cancel(self.request))]

    def _time_out(self, detail: str) -> list[Action]:
        self.timed_out = True
        self._terminate()
        return [TimedOut(detail)]

    def _terminate(self) -> None:
        self.state = InviteState.TERMINATED
        self._timer_a = self._timer_b = self._timer_d = self._timer_m = None
        self._timer_deadline = self._timer_cancel = None


# --- requests built from the INVITE ---------------------------------------------------------


def _required(message: Request | Response, name: str) -> str:
    value = message.header(name)
    if value is None:
        raise SipParseError(f"{message.__class__.__name__.lower()} has no {name}")
    return value


def _top_via_value(request: Request) -> str:
    return split_commas(_required(request, "Via"))[0]


def build_ack_non2xx(invite: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK for a non-2xx final response, part of the INVITE transaction:
    same Request-URI, Call-ID, From and top Via (same branch) as the INVITE, the To of the
    response (with its tag), CSeq number of the INVITE with method ACK, and its Route set."""
    number = invite.cseq[0]
    items: list[tuple[str, str]] = [
        ("Via", _top_via_value(invite)),
        ("Max-Forwards", MAX_FORWARDS),
        ("From", _required(invite, "From")),
        ("To", _required(response, "To")),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{number} ACK"),
        *(("Route", value) for value in invite.header_all("Route")),
        ("Content-Length", "0"),
    ]
    return Request(Headers(tuple(items)), b"", method="ACK", uri=invite.uri)


def build_cancel(invite: Request) -> Request:
    """§9.1: CANCEL with the INVITE's Request-URI, Call-ID, To, From, CSeq number (method
    CANCEL), its single top Via (same branch: the server matches it to the INVITE) and its
    Route header fields."""
    items: list[tuple[str, str]] = [
        ("Via", _top_via_value(invite)),
        ("Max-Forwards", MAX_FORWARDS),
        ("From", _required(invite, "From")),
        ("To", _required(invite, "To")),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq[0]} CANCEL"),
        *(("Route", value) for value in invite.header_all("Route")),
        ("Content-Length", "0"),
    ]
    return Request(Headers(tuple(items)), b"", method="CANCEL", uri=invite.uri)


# --- the dialog a 2xx creates (§12.1.2) and requests inside it (§12.2.1.1) ------------------


def name_addr_uri(value: str) -> str:
    """The URI of a name-addr (`"Bob" <sip:b@h>;tag=x` -> `sip:b@h`) or of an addr-spec
    (`sip:b@h;tag=x` -> `sip:b@h`: without brackets, `;` starts header parameters, §20)."""
    if "<" in value:
        inner = value.split("<", 1)[1]
        if ">" not in inner:
            raise SipParseError(f"unterminated <...> in {value[:80]!r}")
        return inner.split(">", 1)[0].strip()
    return value.split(";", 1)[0].strip()


def header_tag(value: str) -> str | None:
    """The `tag` parameter of a From or To value (§19.3), None when absent."""
    params = value.rsplit(">", 1)[-1] if "<" in value else value
    for part in params.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == "tag":
            return val.strip()
    return None


@dataclass(frozen=True, slots=True)
class Dialog:
    """The UAC's view of a dialog (§12.1.2), enough to ACK the 2xx and to send BYE."""

    call_id: str
    local_uri: str
    local_tag: str
    remote_uri: str
    remote_tag: str
    remote_target: str  # the 2xx's Contact URI
    route_set: tuple[str, ...]  # Record-Route of the 2xx, reversed, each as `<uri;params>`
    invite_cseq: int
    transport: str
    local: tuple[str, int | None]  # our Via sent-by
    credentials: tuple[tuple[str, str], ...] = ()  # the INVITE's, for the 2xx ACK

    @property
    def strict_route(self) -> bool:
        """§12.2.1.1: a first route without `lr` is a strict router (RFC 2543)."""
        if not self.route_set:
            return False
        return parse_uri(name_addr_uri(self.route_set[0])).param("lr") is None

    @property
    def next_hop(self) -> str:
        """Where requests in the dialog go (§8.1.2): the first route, else the remote
        target. The caller resolves it (RFC 3263) or uses its outbound proxy."""
        return name_addr_uri(self.route_set[0]) if self.route_set else self.remote_target


def dialog_from_2xx(invite: Request, response: Response) -> Dialog:
    """§12.1.2: the dialog state of a 2xx to our INVITE. Raises SipParseError when the 2xx
    cannot establish one (no Contact, no To tag, an unparsable URI): such a 2xx can still be
    ACKed hop by hop only, which the caller reports as malformed."""
    if not 200 <= response.status_code < 300:
        raise ValueError("only a 2xx creates a dialog here")
    to_value = _required(response, "To")
    remote_tag = header_tag(to_value)
    if not remote_tag:
        raise SipParseError("2xx to INVITE has no To tag")
    from_value = _required(invite, "From")
    local_tag = header_tag(from_value)
    if not local_tag:
        raise SipParseError("our INVITE has no From tag")
    contacts = response.header_all("Contact")
    if len(contacts) != 1:
        # §12.1.2 / §13.3.1.4: exactly one Contact, a SIP URI, in a dialog-creating 2xx.
        raise SipParseError(f"2xx to INVITE has {len(contacts)} Contact values, want 1")
    route_set = tuple(reversed(response.header_all("Record-Route")))
    try:
        target = str(parse_uri(name_addr_uri(contacts[0])))
        for route in route_set:
            parse_uri(name_addr_uri(route))
    except SipUriError as exc:
        raise SipParseError(f"2xx to INVITE: {exc}") from None
    via = invite.top_via
    return Dialog(
        call_id=invite.call_id,
        local_uri=name_addr_uri(from_value),
        local_tag=local_tag,
        remote_uri=name_addr_uri(to_value),
        remote_tag=remote_tag,
        remote_target=target,
        route_set=route_set,
        invite_cseq=invite.cseq[0],
        transport=via.transport.lower(),
        local=(via.host, via.port),
        credentials=tuple(
            (key, value) for key, value in invite.headers if key.lower() in _CREDENTIALS
        ),
    )


def build_in_dialog(
    dialog: Dialog,
    method: str,
    *,
    cseq: int,
    branch: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> Request:
    """A request inside the dialog (§12.2.1.1): To with the remote tag, From with ours, the
    Request-URI and Route from the route set and remote target (loose routing; a strict
    first route becomes the Request-URI and the remote target the last Route)."""
    routes = list(dialog.route_set)
    uri = dialog.remote_target
    if dialog.strict_route:
        uri = name_addr_uri(routes[0])
        routes = [*routes[1:], f"<{dialog.remote_target}>"]
    sent_by = format_hostport(*dialog.local)
    via = f"SIP/2.0/{dialog.transport.upper()} {sent_by};branch={branch};rport"
    items: list[tuple[str, str]] = [
        ("Via", via),
        ("Max-Forwards", MAX_FORWARDS),
        ("From", f"<{dialog.local_uri}>;tag={dialog.local_tag}"),
        ("To", f"<{dialog.remote_uri}>;tag={dialog.remote_tag}"),
        ("Call-ID", dialog.call_id),
        ("CSeq", f"{cseq} {method}"),
        *(("Route", route) for route in routes),
        *headers,
        ("Content-Length", str(len(body))),
    ]
    return Request(Headers(tuple(items)), body, method=method, uri=uri)


def build_ack_2xx(dialog: Dialog, branch: str) -> Request:
    """§13.2.2.4: the ACK of a 2xx, a request of its own (new branch) inside the dialog,
    with the INVITE's CSeq number and credentials. Send the same bytes again for each
    retransmission of that 2xx."""
    return build_in_dialog(
        dialog, "ACK", cseq=dialog.invite_cseq, branch=branch, headers=dialog.credentials
    )


def build_bye(
    dialog: Dialog, branch: str, *, cseq: int | None = None, headers: Sequence[tuple[str, str]] = ()
) -> Request:
    """§15.1.1: BYE inside the dialog, CSeq one above the INVITE's unless told otherwise."""
    number = dialog.invite_cseq + 1 if cseq is None else cseq
    return build_in_dialog(dialog, "BYE", cseq=number, branch=branch, headers=headers)
