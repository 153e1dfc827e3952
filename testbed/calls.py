"""Established calls held through a proxy, measured: the lab's caller for issue 12 §4.

Owns: placing N UDP calls through a SIP proxy (the lab's VIP) to a UAS that answers with SDP
and echoes RTP (sipp `-rtp_echo`, testbed/sipp_uas_call.xml), keeping them up with media and
an in-dialog UPDATE every `refresh_s` (as a session refresh does, RFC 4028, only far more
often, so a gap is seen to 0.1-0.2 s), then ending each with BYE; and what each call saw:
the answered UPDATEs' times (the signalling gap around a moment, `CallReport.gap_around`), the
RTP echo's arrival times (the largest media gap), the BYE's answer.
Must not know: sipwatch — this is the independent side of the lab; the SIP here is the few
lines a caller needs, written against RFC 3261 directly.

One asyncio loop in a thread of its own, inside a network namespace when one is given (setns
switches only that thread). An UPDATE is not retransmitted: the next one, `refresh_s` later,
is the retry, and one unanswered after `answer_timeout_s` counts as lost. INVITE and BYE are
retransmitted on Timer A/E (T1 0.5 s) and bounded. Every call placed is ended (BYE) by
`stop()`, bounded, however the holder is left (`with CallHolder(...) as calls:`).

    holder = CallHolder(target="sip:ivr@10.250.0.60:5080", proxy=("10.250.0.100", 5060),
                        local_ip="10.250.0.50", n=10, netns=Netns("swlab-cl"))
    holder.start()                  # returns once every call is answered (or raises)
    t = time.monotonic(); ...       # the fault
    reports = holder.stop()         # BYE each; one CallReport per call
    reports[0].gap_around(t)        # the longest stretch without an answered UPDATE that
                                    # ends after t
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.netns import Netns, enter
from testbed.process import TestbedError

__all__ = ["CallHolder", "CallReport"]

T1_S = 0.5
RTP_PTIME_S = 0.02
RTP_PAYLOAD = b"\xff" * 160  # PCMU silence, 20 ms at 8 kHz


def _token() -> str:
    return os.urandom(6).hex()


def _status(message: bytes) -> int | None:
    match = re.match(rb"SIP/2\.0 ([1-6]\d\d) ", message)
    return int(match.group(1)) if match else None


def _headers(message: bytes, *names: str) -> list[str]:
    """Every value of the named headers, in order; comma lists split (Record-Route)."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    wanted = {n.lower() for n in names}
    values = []
    for line in head.split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in wanted:
            values += [v.strip() for v in re.split(r",(?=\s*<)", value) if v.strip()]
    return values


def _one(message: bytes, *names: str) -> str:
    found = _headers(message, *names)
    return found[0] if found else ""


def _uri(name_addr: str) -> str:
    match = re.search(r"<([^>]+)>", name_addr)
    return match.group(1) if match else name_addr.split(";", 1)[0].strip()


def _sdp_audio(body: bytes) -> tuple[str, int] | None:
    text = body.decode("ascii", "replace")
    conn = re.search(r"(?m)^c=IN IP4 (\S+)", text)
    media = re.search(r"(?m)^m=audio (\d+) ", text)
    if not conn or not media:
        return None
    return conn.group(1), int(media.group(1))


@dataclass
class CallReport:
    """What one held call saw; times are time.monotonic() of the holder's process."""

    call_id: str
    invite_status: int | None = None
    answered_at: float | None = None
    updates_sent: int = 0
    update_answers: list[tuple[float, int]] = field(default_factory=list)  # (time, status)
    updates_lost: int = 0  # no final answer within answer_timeout_s
    rtp_sent: int = 0
    rtp_arrivals: list[float] = field(default_factory=list)
    bye_status: int | None = None
    ended_by_far_end: bool = False

    def ok_times(self) -> list[float]:
        return [t for t, status in self.update_answers if 200 <= status < 300]

    def gap_around(self, moment: float) -> float | None:
        """The signalling gap of a fault at `moment`: the longest stretch between two UPDATEs
        answered 2xx that ends after `moment` (the stretch across the fault itself, and any
        later one: after a 503 the calls go on through the old node until the VIP moves, and
        the gap comes then). None when none was answered after `moment` (not survived)."""
        oks = self.ok_times()
        before = [t for t in oks if t <= moment]
        after = [t for t in oks if t > moment]
        if not after:
            return None
        points = [before[-1] if before else moment, *after]
        return max(b - a for a, b in itertools.pairwise(points))

    def answered_after(self, moment: float) -> int:
        return sum(t > moment for t in self.ok_times())

    def failed_after(self, moment: float) -> int:
        """Final non-2xx answers to UPDATEs after `moment` (408, 481, 503...)."""
        return sum(t > moment and not 200 <= s < 300 for t, s in self.update_answers)

    def media_gap(self, since: float | None = None) -> float | None:
        """The largest gap between two RTP echoes arriving (after `since`), None if fewer than
        two came."""
        times = [t for t in self.rtp_arrivals if since is None or t >= since]
        if len(times) < 2:
            return None
        return max(b - a for a, b in itertools.pairwise(times))

    @property
    def survived(self) -> bool:
        """Answered, kept (an UPDATE answered 2xx in its last refresh period), ended 200."""
        return self.invite_status == 200 and self.bye_status == 200


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_data: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_data(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP: the next send tells
        pass


class _Call:
    """One call's dialog, media and refreshes, on its own SIP and RTP sockets."""

    def __init__(self, holder: CallHolder, report: CallReport) -> None:
        self.h = holder
        self.r = report
        self.from_tag = _token()
        self.to_tag = ""
        self.cseq = 1
        self.route: list[str] = []
        self.remote_target = holder.target
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.sip: asyncio.DatagramTransport | None = None
        self.rtp: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.rtp_port = 0
        self.media_to: tuple[str, int] | None = None
        self.invite_2xx: asyncio.Future[bytes] | None = None
        self.last_ack = b""
        self.in_flight: set[asyncio.Future[None]] = set()  # UPDATEs awaiting their answer

    # -- messages ----------------------------------------------------------------------------
    def _request(self, method: str, cseq: int, body: bytes = b"", in_dialog: bool = True) -> bytes:
        host, port = self.local
        lines = [
            f"{method} {self.remote_target if in_dialog else self.h.target} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};rport;branch=z9hG4bK{_token()}",
            "Max-Forwards: 70",
            f"From: <sip:holder@{host}>;tag={self.from_tag}",
            f"To: <{self.h.target}>" + (f";tag={self.to_tag}" if self.to_tag else ""),
            f"Call-ID: {self.r.call_id}",
            f"CSeq: {cseq} {method}",
            *(f"Route: {r}" for r in (self.route if in_dialog else [])),
            f"Contact: <sip:holder@{host}:{port}>",
            "User-Agent: sipwatch-testbed-callholder",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _offer(self) -> bytes:
        host = self.local[0]
        return (
            f"v=0\r\no=holder {os.getpid()} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\n"
            f"t=0 0\r\nm=audio {self.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=ptime:20\r\n"
        ).encode()

    def _send(self, data: bytes) -> None:
        if self.sip is not None:
            self.sip.sendto(data, self.h.proxy)

    # -- receiving ---------------------------------------------------------------------------
    def on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        status = _status(data)
        cseq_value = _one(data, "CSeq").split()
        if status is None:
            self._on_request(data, cseq_value)
            return
        if len(cseq_value) != 2 or not cseq_value[0].isdigit():
            return
        number, method = int(cseq_value[0]), cseq_value[1]
        if method == "INVITE":
            if status >= 200 and self.invite_2xx is not None:
                if not self.invite_2xx.done():
                    self.invite_2xx.set_result(data)
                elif 200 <= status < 300 and self.last_ack:
                    self._send(self.last_ack)  # a retransmitted 2xx: ACK again
            return
        future = self.pending.get(number)
        if status >= 200 and future is not None and not future.done():
            future.set_result((status, data))

    def _on_request(self, data: bytes, cseq_value: list[str]) -> None:
        """A request from the far end (its BYE): answered 200 from its own headers."""
        method = data.split(b" ", 1)[0].decode("ascii", "replace")
        if method == "BYE":
            self.r.ended_by_far_end = True
        if method == "ACK":
            return
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
        keep = [
            line
            for line in head
            if line.split(b":", 1)[0].strip().lower()
            in (b"via", b"from", b"to", b"call-id", b"cseq", b"record-route")
        ]
        reply = b"\r\n".join([b"SIP/2.0 200 OK", *keep, b"Content-Length: 0"]) + b"\r\n\r\n"
        self._send(reply)

    def on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2:
            self.r.rtp_arrivals.append(time.monotonic())

    # -- the call ----------------------------------------------------------------------------
    async def open(self, loop: asyncio.AbstractEventLoop) -> None:
        ip = self.h.local_ip
        sip, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self.on_sip), local_addr=(ip, 0)
        )
        rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self.on_rtp), local_addr=(ip, 0)
        )
        self.sip, self.rtp = sip, rtp
        self.local = sip.get_extra_info("sockname")[:2]
        self.rtp_port = rtp.get_extra_info("sockname")[1]

    async def invite(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        self.invite_2xx = loop.create_future()
        request = self._request("INVITE", 1, self._offer(), in_dialog=False)
        deadline = loop.time() + timeout_s
        wait = T1_S
        while not self.invite_2xx.done() and loop.time() < deadline:
            self._send(request)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(self.invite_2xx), min(wait, deadline - loop.time())
                )
            wait = min(wait * 2, 4.0)
        if not self.invite_2xx.done():
            raise TestbedError(f"call {self.r.call_id}: INVITE not answered in {timeout_s} s")
        answer = self.invite_2xx.result()
        self.r.invite_status = _status(answer)
        if self.r.invite_status != 200:
            raise TestbedError(f"call {self.r.call_id}: INVITE answered {self.r.invite_status}")
        self.r.answered_at = time.monotonic()
        tag = re.search(r";\s*tag=([^;\s]+)", _one(answer, "To", "t"))
        self.to_tag = tag.group(1) if tag else ""
        self.route = list(reversed(_headers(answer, "Record-Route")))
        contact = _one(answer, "Contact", "m")
        self.remote_target = _uri(contact) if contact else self.h.target
        body = answer.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in answer else b""
        self.media_to = _sdp_audio(body)
        self.last_ack = self._request("ACK", 1)
        self._send(self.last_ack)

    async def media(self) -> None:
        if self.media_to is None or self.rtp is None:
            return
        ssrc = int.from_bytes(os.urandom(4), "big")
        seq, ts = int.from_bytes(os.urandom(2), "big"), 0
        start = time.monotonic()
        n = 0
        while True:
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            self.rtp.sendto(header + RTP_PAYLOAD, self.media_to)
            self.r.rtp_sent += 1
            seq, ts, n = seq + 1, ts + 160, n + 1
            await asyncio.sleep(max(0.0, start + n * RTP_PTIME_S - time.monotonic()))

    async def refresh(self) -> None:
        while True:
            await asyncio.sleep(self.h.refresh_s)
            self.cseq += 1
            task = asyncio.ensure_future(self._update(self.cseq))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

    async def _update(self, cseq: int) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self.pending[cseq] = future
        self._send(self._request("UPDATE", cseq))
        self.r.updates_sent += 1
        try:
            status, _ = await asyncio.wait_for(future, self.h.answer_timeout_s)
            self.r.update_answers.append((time.monotonic(), status))
        except TimeoutError:
            self.r.updates_lost += 1
        finally:
            self.pending.pop(cseq, None)

    async def bye(self, timeout_s: float) -> None:
        if self.r.invite_status != 200 or self.r.ended_by_far_end:
            return
        loop = asyncio.get_running_loop()
        self.cseq += 1
        cseq = self.cseq
        future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self.pending[cseq] = future
        request = self._request("BYE", cseq)
        deadline = loop.time() + timeout_s
        wait = T1_S
        while not future.done() and loop.time() < deadline:
            self._send(request)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), min(wait, deadline - loop.time()))
            wait = min(wait * 2, 4.0)
        if future.done():
            self.r.bye_status = future.result()[0]

    def close(self) -> None:
        for transport in (self.sip, self.rtp):
            if transport is not None:
                transport.close()


class CallHolder:
    """N established calls through `proxy` to `target`, held until stop() (module doc)."""

    def __init__(
        self,
        *,
        target: str,
        proxy: tuple[str, int],
        local_ip: str,
        n: int = 10,
        netns: Netns | None = None,
        refresh_s: float = 0.15,
        answer_timeout_s: float = 2.0,
        bye_timeout_s: float = 8.0,
        max_hold_s: float = 600.0,
    ) -> None:
        if not 1 <= n <= 200:
            raise ValueError("hold 1 to 200 calls")
        self.target, self.proxy, self.local_ip, self.n = target, proxy, local_ip, n
        self.netns, self.refresh_s, self.answer_timeout_s = netns, refresh_s, answer_timeout_s
        self.bye_timeout_s = bye_timeout_s
        self.max_hold_s = max_hold_s  # the holder ends its calls by itself after this
        self.reports = [CallReport(f"hold-{i}-{_token()}@sipwatch-testbed") for i in range(n)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._established = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        """Place the calls; return once every one is answered and its media flows."""
        self._thread = threading.Thread(target=self._main, name="call-holder", daemon=True)
        self._thread.start()
        if not self._established.wait(timeout_s) or self._error is not None:
            self.stop()
            raise TestbedError(f"the held calls were not established: {self._error}")

    def stop(self, timeout_s: float = 15.0) -> list[CallReport]:
        """End every call (BYE, bounded) and the holder's thread; the reports."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TestbedError(f"the call holder did not end within {timeout_s} s")
        return self.reports

    def __enter__(self) -> CallHolder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            if self.netns is not None:
                enter(self.netns)
            asyncio.run(self._run())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._established.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        calls = [_Call(self, r) for r in self.reports]
        tasks: list[asyncio.Task[None]] = []
        try:
            for call in calls:
                await call.open(self._loop)
            await asyncio.gather(*(c.invite(timeout_s=8.0) for c in calls))
            for call in calls:
                tasks += [
                    asyncio.ensure_future(call.media()),
                    asyncio.ensure_future(call.refresh()),
                ]
            await self._media_flowing(calls, timeout_s=5.0)
            self._established.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.max_hold_s)
        except BaseException as exc:
            self._error = exc
            self._established.set()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # the UPDATEs in flight get their answer (or answer_timeout_s) before the BYE
            await asyncio.gather(*(t for c in calls for t in c.in_flight), return_exceptions=True)
            byes = (c.bye(timeout_s=self.bye_timeout_s) for c in calls)
            await asyncio.gather(*byes, return_exceptions=True)
            for call in calls:
                call.close()

    @staticmethod
    async def _media_flowing(calls: list[_Call], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while any(not c.r.rtp_arrivals for c in calls if c.media_to is not None):
            if time.monotonic() > deadline:
                raise TestbedError("no RTP came back on some of the held calls")
            await asyncio.sleep(0.05)
