"""A hostile callee on the loopback: a UDP UAS that answers an INVITE wrongly on purpose, from
a thread of its own, and records every request it receives (so a test can check that the
caller still ended its call: the ACK, the BYE).

Behaviours (`start_hostile_uas(behaviour)`):
    bad_sdp_address   200 OK whose SDP connection address is a host name (not an IP
                      literal): no usable answer; the caller must still ACK and BYE
    rtp_elsewhere     200 OK with an SDP pointing at a socket that stays silent, while a
                      second socket (another port) sends RTP to the caller's offered
                      address: media from an unexpected source must not count
    foreign_answers   a 200 for another branch, a 200 for our branch but another Call-ID
                      (neither is an answer to us), then the real answer: 486 Busy Here
    garbage           bytes that are not SIP instead of any response

Must not know: sipwatch.sip (the independent side of the test, like `rawsip`). Loopback only;
`stop()` is bounded and idempotent, and re-raises what stopped the thread, if anything did.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

from testbed.threaded_peer import ThreadedPeer

__all__ = ["BEHAVIOURS", "HostileUas", "start_hostile_uas"]

BEHAVIOURS = ("bad_sdp_address", "rtp_elsewhere", "foreign_answers", "garbage")
_HOST = "127.0.0.1"
_MAX = 65_535
_RTP_EVERY_S = 0.02


@dataclass(frozen=True)
class Received:
    method: str
    branch: str
    call_id: str


def _parse(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    start, *lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return start, headers, body


def _first(headers: list[tuple[str, str]], *names: str) -> str:
    return next((v for n, v in headers if n in names), "")


@dataclass
class HostileUas(ThreadedPeer):
    _what: ClassVar[str] = "hostile UAS"
    behaviour: str
    port: int = 0
    received: list[Received] = field(default_factory=list)
    rtp_sent: int = 0  # by the second socket (rtp_elsewhere)
    _sock: socket.socket | None = field(default=None, repr=False)
    _media: socket.socket | None = field(default=None, repr=False)  # the SDP's, silent
    _other: socket.socket | None = field(default=None, repr=False)  # sends RTP, unannounced
    _rtp_to: tuple[str, int] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def uri(self, user: str = "ivr") -> str:
        return f"sip:{user}@{_HOST}:{self.port}"

    def wait_received(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        """The requests received, once there are at least `count` (or `timeout_s` passed):
        a fire-and-forget ACK may still be in flight when the caller is done."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                got = list(self.received)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.01)

    def methods(self) -> list[str]:
        with self._lock:
            return [r.method for r in self.received]

    def start(self) -> HostileUas:
        self._sock = self._udp()
        self.port = self._sock.getsockname()[1]
        self._media, self._other = self._udp(), self._udp()
        self._start_thread("hostile-uas")
        return self

    @staticmethod
    def _udp() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((_HOST, 0))
        return sock

    def _close(self) -> None:
        for sock in (self._sock, self._media, self._other):
            if sock is not None:
                sock.close()
        self._sock = self._media = self._other = None

    # -- the thread ---------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None and self._wake is not None
        while True:
            timeout = _RTP_EVERY_S if self._rtp_to is not None else None
            ready = select.select([self._sock, self._wake[0]], [], [], timeout)[0]
            if self._wake[0] in ready:
                return
            if self._sock in ready:
                data, source = self._sock.recvfrom(_MAX)
                if data.strip(b"\r\n"):
                    self._request(data, source)
            if self._rtp_to is not None:
                self._send_rtp()

    def _send_rtp(self) -> None:
        assert self._other is not None and self._rtp_to is not None
        seq = self.rtp_sent & 0xFFFF
        header = struct.pack("!BBHII", 0x80, 0, seq, 160 * self.rtp_sent & 0xFFFFFFFF, 0x5EED)
        self._other.sendto(header + b"\xff" * 160, self._rtp_to)
        self.rtp_sent += 1

    def _request(self, data: bytes, source: tuple[str, int]) -> None:
        assert self._sock is not None
        start, headers, body = _parse(data)
        method = start.split(" ", 1)[0]
        via = _first(headers, "via", "v")
        branch = re.search(r"branch=([^;,\s]+)", via)
        call_id = _first(headers, "call-id", "i")
        with self._lock:
            self.received.append(Received(method, branch.group(1) if branch else "", call_id))
        send = self._sock.sendto
        if method == "INVITE":
            for reply in self._answers(headers, body):
                send(reply, source)
        elif method == "BYE":
            self._rtp_to = None
            send(self._response(headers, "200 OK"), source)
        elif method != "ACK":
            send(self._response(headers, "200 OK"), source)

    def _answers(self, headers: list[tuple[str, str]], offer: bytes) -> list[bytes]:
        if self.behaviour == "garbage":
            return [b"\x00\x01 this is not SIP \xff\xfe\r\n\r\n"]
        if self.behaviour == "foreign_answers":
            return [
                self._response(headers, "200 OK", sdp=self._sdp(), branch="z9hG4bKnotyours"),
                self._response(headers, "200 OK", sdp=self._sdp(), call_id="not-your-call"),
                self._response(headers, "486 Busy Here"),
            ]
        if self.behaviour == "bad_sdp_address":
            return [self._response(headers, "200 OK", sdp=self._sdp(host="ivr.example.invalid"))]
        # rtp_elsewhere: the answer names the silent socket; the other one sends.
        found = re.search(rb"c=IN IP4 (\S+).*?m=audio (\d+)", offer, re.S)
        if found is not None:
            self._rtp_to = (found.group(1).decode(), int(found.group(2)))
        return [self._response(headers, "200 OK", sdp=self._sdp())]

    def _sdp(self, host: str | None = None) -> bytes:
        assert self._media is not None
        address = host or _HOST
        port = self._media.getsockname()[1]
        return (
            f"v=0\r\no=hostile 1 1 IN IP4 {_HOST}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        ).encode()

    def _response(
        self,
        headers: list[tuple[str, str]],
        status: str,
        *,
        sdp: bytes = b"",
        branch: str | None = None,
        call_id: str | None = None,
    ) -> bytes:
        lines = [f"SIP/2.0 {status}"]
        for name, value in headers:
            if name in ("via", "v"):
                if branch is not None:
                    value = re.sub(r"branch=[^;,\s]+", f"branch={branch}", value)
                lines.append(f"Via: {value}")
        lines.append(f"From: {_first(headers, 'from', 'f')}")
        to = _first(headers, "to", "t")
        lines.append(f"To: {to}" if "tag=" in to else f"To: {to};tag=hostile")
        lines.append(f"Call-ID: {call_id or _first(headers, 'call-id', 'i')}")
        lines.append(f"CSeq: {_first(headers, 'cseq')}")
        lines.append(f"Contact: <sip:ivr@{_HOST}:{self.port}>")
        if sdp:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(sdp)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + sdp


def start_hostile_uas(behaviour: str) -> HostileUas:
    """Start a hostile callee on 127.0.0.1 (UDP); stop it with `stop()`."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {behaviour!r}")
    return HostileUas(behaviour).start()
