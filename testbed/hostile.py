"""A hostile SIP peer on the loopback: a UAS that answers every request with a correct final
response (our Via and branch, From, To with a tag, Call-ID, CSeq, the Contact of a REGISTER)
and then breaks it on purpose — a rewritten status line, an extra header, a regex edit — over
UDP or TCP, from a thread of its own.

Owns: reading requests off a socket (datagrams; streams framed by Content-Length), building the
answer from the request's own bytes, applying the edits, counting what it received. Must not
know: sipwatch.sip — like `rawsip`, it is the independent side of a functional test, so a parser
bug in the client cannot hide behind the same bug here. Requests are read as bytes and copied
as bytes; the edits are applied to the reply as text encoded in UTF-8 (which is the point: it
sends what a broken or hostile stack would).

    peer = start_hostile("udp", status="\\uff12\\uff10\\uff10 OK")  # fullwidth 200
    peer = start_hostile("tcp", edits=[(r"CSeq: \\d+", "CSeq: ¹")])
    peer = start_hostile("udp", status="503 Service Unavailable", extra=["Retry-After: ³"])
    ...
    peer.stop()                                          # closes the sockets, joins the thread

Loopback only; `stop()` is bounded and idempotent.
"""

from __future__ import annotations

import re
import select
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from testbed.threaded_peer import ThreadedPeer

__all__ = ["HostilePeer", "start_hostile"]

_HOST = "127.0.0.1"
_COPIED = (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq")
_MAX = 65_535


def _lines(request: bytes) -> tuple[bytes, list[tuple[bytes, bytes, bytes]]]:
    """The start line and (name as written, lower-cased name, value) of each header line."""
    head = request.split(b"\r\n\r\n", 1)[0]
    start, *rest = head.split(b"\r\n")
    headers = []
    for line in rest:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip(), name.strip().lower(), value.strip()))
    return start, headers


def answer(
    request: bytes,
    source: tuple[str, int],
    *,
    status: str = "200 OK",
    extra: Sequence[str] = (),
    edits: Sequence[tuple[str, str]] = (),
    contact_expires: bool = True,
) -> bytes:
    """The reply to `request` received from `source`: correct (RFC 3261 §8.2.6: Via, From,
    Call-ID, CSeq copied, a To tag added; the top Via gets rport and received per RFC 3581),
    then `extra` header lines added and the `edits` (regex, replacement) applied."""
    start, headers = _lines(request)
    out = [f"SIP/2.0 {status}".encode()]
    first_via = True
    for raw_name, name, value in headers:
        if name not in _COPIED:
            continue
        if name in (b"via", b"v") and first_via:
            first_via = False
            value = re.sub(rb";rport(?=;|$)", f";rport={source[1]}".encode(), value)
            value += f";received={source[0]}".encode()
        out.append(raw_name + b": " + value)
    to = next((v for _, n, v in headers if n in (b"to", b"t")), b"<sip:hostile@127.0.0.1>")
    out.append(b"To: " + to + b";tag=hostile")
    if start.startswith(b"REGISTER "):
        contact = next((v for _, n, v in headers if n in (b"contact", b"m")), None)
        expires = next((v for _, n, v in headers if n == b"expires"), b"60")
        if contact is not None:
            suffix = b";expires=" + expires if contact_expires else b""
            out.append(b"Contact: " + contact + suffix)
    out += [line.encode() for line in extra]
    out.append(b"Server: sipwatch-testbed-hostile")
    out.append(b"Content-Length: 0")
    text = (b"\r\n".join(out) + b"\r\n\r\n").decode()
    for pattern, replacement in edits:
        text = re.sub(pattern, replacement, text)
    return text.encode()


@dataclass
class HostilePeer(ThreadedPeer):
    """A running hostile UAS. `uri` targets it; `requests` counts what it was sent."""

    _what: ClassVar[str] = "hostile peer"
    transport: str
    status: str = "200 OK"
    extra: Sequence[str] = ()
    edits: Sequence[tuple[str, str]] = ()
    contact_expires: bool = True
    port: int = 0
    requests: int = 0
    _sock: socket.socket | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{_HOST}:{self.port}{suffix}"

    def reply(self, request: bytes, source: tuple[str, int]) -> bytes:
        self.requests += 1
        return answer(
            request,
            source,
            status=self.status,
            extra=self.extra,
            edits=self.edits,
            contact_expires=self.contact_expires,
        )

    def start(self) -> HostilePeer:
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_HOST, 0))
        if self.transport != "udp":
            sock.listen(8)
        self._sock, self.port = sock, sock.getsockname()[1]
        self._start_thread("hostile-sip")
        return self

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _serve(self) -> None:
        if self.transport == "udp":
            self._serve_udp()
        else:
            self._serve_tcp()

    def _serve_udp(self) -> None:
        assert self._sock is not None and self._wake is not None
        while True:
            ready = select.select([self._sock, self._wake[0]], [], [])[0]
            if self._wake[0] in ready:
                return
            data, source = self._sock.recvfrom(_MAX)
            if data.strip(b"\r\n"):
                self._sock.sendto(self.reply(data, source), source)

    def _serve_tcp(self) -> None:
        assert self._sock is not None and self._wake is not None
        conns: dict[socket.socket, bytearray] = {}
        try:
            while True:
                ready = select.select([self._sock, self._wake[0], *conns], [], [])[0]
                if self._wake[0] in ready:
                    return
                for sock in ready:
                    if sock is self._sock:
                        conn, _ = self._sock.accept()
                        conns[conn] = bytearray()
                        continue
                    try:
                        chunk = sock.recv(_MAX)
                        buf = conns[sock]
                        buf += chunk
                        for request in _stream_requests(buf):
                            sock.sendall(self.reply(request, sock.getpeername()[:2]))
                    except OSError:
                        chunk = b""  # the client reset the connection: forget it
                    if not chunk:
                        del conns[sock]
                        sock.close()
        finally:
            for conn in conns:
                conn.close()


def _stream_requests(buf: bytearray) -> list[bytes]:
    """Complete requests cut off the front of `buf` (RFC 3261 §18.3: Content-Length)."""
    out = []
    while (end := buf.find(b"\r\n\r\n")) >= 0:
        length = 0
        for _, name, value in _lines(bytes(buf[: end + 4]))[1]:
            if name in (b"content-length", b"l") and value.isdigit():
                length = int(value)  # bytes.isdigit() is ASCII only
        total = end + 4 + length
        if len(buf) < total:
            break
        out.append(bytes(buf[:total]))
        del buf[:total]
    return out


def start_hostile(
    transport: str,
    *,
    status: str = "200 OK",
    extra: Sequence[str] = (),
    edits: Sequence[tuple[str, str]] = (),
    contact_expires: bool = True,
) -> HostilePeer:
    """Start a hostile UAS on 127.0.0.1 (transport "udp" or "tcp"); stop it with `stop()`."""
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport must be udp or tcp, not {transport!r}")
    return HostilePeer(transport, status, extra, edits, contact_expires).start()
