"""SIP over WebSocket for the test rig: an oracle client and hostile WebSocket peers.

Owns: `send_request`, one SIP request over WS/WSS (RFC 7118) from a fresh connection and the
first final response back — the rig's independent view of Kamailio's WebSocket listeners —
and `HostileWsPeer`, a WebSocket server on the loopback that breaks RFC 7118 in one chosen way
per instance (`BEHAVIOURS`), for the failure cases a real PBX cannot be made to produce.

Must not know: sipwatch.sip. Like `rawsip`, this side of every functional test speaks SIP
through its own few lines; the WebSocket framing is wsproto's (client and server roles), the
library the product uses, but the SIP on top and every decision about it are the rig's own.
Threads, not asyncio, so the peer serves the blocking driver and the asyncio one alike; every
loop is bounded, and `stop()` joins every thread it started.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from testbed import rawsip
from testbed.process import check_loopback

__all__ = ["BEHAVIOURS", "HostileWsPeer", "send_request", "start_hostile_ws_peer"]

#: What a HostileWsPeer does, one behaviour per instance:
BEHAVIOURS = {
    "ok": "a correct SIP WebSocket server answering 200 (the control case)",
    "no_subprotocol": "101 Switching Protocols without Sec-WebSocket-Protocol, then 200s",
    "garbage": "a text frame that is not SIP (no branch in it) for every request",
    "garbage_branch": "a frame that is not SIP but carries the request's branch",
    "garbage_flood": "non-SIP frames, as fast as the socket takes them, for 3 s after each request",
    "spoofed_branch": "a 200 whose Via branch is not the request's",
    "http_200": "a plain HTTP/1.1 200 OK page instead of 101",
    "close_after_handshake": "101, then a close frame (1000) at once",
    "binary_ok": "like ok, but answers in binary frames split into two fragments",
}
_MAX_CONNECTIONS = 64
_FLOOD_S = 3.0  # bounded; sent as fast as the socket takes it
_CONNECTION_LIFETIME_S = 30.0
_BRANCH = re.compile(rb"branch=(z9hG4bK[^;,\s]+)")


def _client_request(method: str, ruri: str, via_host: str, transport: str) -> bytes:
    tag = os.urandom(6).hex()
    lines = [
        f"{method} {ruri} SIP/2.0",
        # RFC 7118 §5.2: a WebSocket client's Via host is a made-up .invalid name.
        f"Via: SIP/2.0/{transport.upper()} {via_host};branch=z9hG4bK{tag};rport",
        "Max-Forwards: 70",
        f"From: <sip:rawws@{via_host}>;tag={tag}",
        f"To: <{ruri.split(';', 1)[0]}>",
        f"Call-ID: {tag}@sipwatch-testbed",
        f"CSeq: 1 {method}",
        "User-Agent: sipwatch-testbed-rawws",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_request(
    host: str,
    port: int,
    *,
    secure: bool = False,
    method: str = "OPTIONS",
    user: str = "monitor",
    timeout_s: float = 2.0,
    ca_file: Path | None = None,
    subprotocols: tuple[str, ...] = ("sip",),
) -> tuple[int | None, rawsip.Exchange | None]:
    """Upgrade to WebSocket on host:port and send one request; returns (HTTP status of the
    upgrade answer, the exchange or None when the upgrade failed). Errors raise OSError."""
    check_loopback(host)
    transport = "wss" if secure else "ws"
    ruri = f"sip:{user}@{rawsip.format_host(host)}:{port};transport={transport}"
    request = _client_request(method, ruri, os.urandom(4).hex() + ".invalid", transport)
    deadline = time.monotonic() + timeout_s
    raw = socket.create_connection((host, port), timeout=timeout_s)
    sock: socket.socket | ssl.SSLSocket = raw
    try:
        if secure:
            ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if ca_file is None:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(raw, server_hostname=host)
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(
            ws.send(Request(host=f"{host}:{port}", target="/", subprotocols=list(subprotocols)))
        )
        start = time.monotonic()
        status: int | None = None
        parts: list[bytes] = []
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    status = 101
                    start = time.monotonic()
                    sock.sendall(ws.send(TextMessage(data=request.decode())))
                elif isinstance(event, RejectConnection):
                    return event.status_code, None
                elif isinstance(event, Ping):
                    sock.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    return status, rawsip.Exchange(request, None, time.monotonic() - start)
                elif isinstance(event, TextMessage | BytesMessage):
                    chunk = event.data
                    parts.append(chunk.encode() if isinstance(chunk, str) else bytes(chunk))
                    if not event.message_finished:
                        continue
                    message, parts = b"".join(parts), []
                    code = rawsip.status_code(message)
                    if code is not None and code >= 200:
                        return status, rawsip.Exchange(request, message, time.monotonic() - start)
        return status, rawsip.Exchange(request, None, time.monotonic() - start)
    finally:
        sock.close()


def _reply(request: bytes, *, branch: bytes | None = None) -> bytes:
    """A 200 to `request` (RFC 3261 §8.2.6: Via, From, To + tag, Call-ID, CSeq copied)."""
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    copied: list[bytes] = []
    for line in head[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name in (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq"):
            if branch is not None and name in (b"via", b"v"):
                line = _BRANCH.sub(b"branch=" + branch, line, count=1)
            copied.append(line)
        elif name in (b"to", b"t"):
            copied.append(line + b";tag=" + os.urandom(4).hex().encode())
    lines = [b"SIP/2.0 200 OK", *copied, b"Server: sipwatch-testbed-rawws", b"Content-Length: 0"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass
class HostileWsPeer:
    """A WebSocket server on the loopback with one misbehaviour (see BEHAVIOURS).

    Use as a context manager or call stop(). `requests` counts the SIP requests it received,
    `last_request` is the last one's bytes and `last_upgrade` the last upgrade request's head.
    """

    behaviour: str
    host: str = "127.0.0.1"
    port: int = 0
    requests: int = 0
    connections: int = 0
    last_request: bytes = b""
    last_upgrade: bytes = b""
    _listener: socket.socket | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {sorted(BEHAVIOURS)}")
        check_loopback(self.host)

    def uri(self, user: str = "monitor") -> str:
        return f"sip:{user}@{rawsip.format_host(self.host)}:{self.port};transport=ws"

    def start(self) -> HostileWsPeer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, end every connection, join every thread (bounded). Idempotent."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"HostileWsPeer threads did not stop: {alive}")

    def __enter__(self) -> HostileWsPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.connections >= _MAX_CONNECTIONS:
                conn.close()
                continue
            self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        deadline = time.monotonic() + _CONNECTION_LIFETIME_S
        parts: list[bytes] = []
        first = True
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                ready, _, _ = select.select([conn], [], [], 0.1)
                if not ready:
                    continue
                data = conn.recv(65536)
                if not data:
                    return
                if self.behaviour == "http_200":
                    page = b"<html>a web server, not a SIP WebSocket</html>\n"
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                        + f"Content-Length: {len(page)}\r\n\r\n".encode()
                        + page
                    )
                    return
                if first:
                    self.last_upgrade, first = data.split(b"\r\n\r\n", 1)[0], False
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        sub = None if self.behaviour == "no_subprotocol" else "sip"
                        out = ws.send(AcceptConnection(subprotocol=sub))
                        if self.behaviour == "close_after_handshake":
                            out += ws.send(CloseConnection(code=1000, reason="bye"))
                        conn.sendall(out)
                    elif isinstance(event, TextMessage | BytesMessage):
                        chunk = event.data
                        parts.append(chunk.encode() if isinstance(chunk, str) else bytes(chunk))
                        if event.message_finished and ws.state is ConnectionState.OPEN:
                            conn.sendall(self._answer(ws, b"".join(parts)))
                            if self.behaviour == "garbage_flood":
                                self._flood(conn, ws)
                        parts = [] if event.message_finished else parts
                    elif isinstance(event, Ping):
                        conn.sendall(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if ws.state is ConnectionState.REMOTE_CLOSING:  # not the answer to ours
                            conn.sendall(ws.send(event.response()))
                        return
        except OSError:
            return  # the client went away (RST): nothing to clean up but the socket
        finally:
            conn.close()

    def _flood(self, conn: socket.socket, ws: WSConnection) -> None:
        """Keep the client's socket readable with garbage for _FLOOD_S (bounded)."""
        until = time.monotonic() + _FLOOD_S
        # Big frames: cheap for both sides per byte, so the socket stays readable without the
        # two threads fighting over the GIL.
        frames = b"".join(ws.send(TextMessage(data="flood: not SIP\r\n\r\n")) for _ in range(64))
        while time.monotonic() < until and not self._stop.is_set():
            conn.sendall(frames)

    def _answer(self, ws: WSConnection, request: bytes) -> bytes:
        with self._lock:
            self.requests += 1
            self.last_request = request
        if self.behaviour in ("garbage", "garbage_flood"):
            return ws.send(TextMessage(data="this is not SIP at all\r\n\r\n"))
        if self.behaviour == "garbage_branch":
            found = _BRANCH.search(request)
            branch = found.group(1).decode() if found else "none"
            return ws.send(TextMessage(data=f"SIP/2.0 2OO OK\r\nbroken;branch={branch}\r\n\r\n"))
        if self.behaviour == "spoofed_branch":
            other = b"z9hG4bK" + os.urandom(10).hex().encode()
            return ws.send(TextMessage(data=_reply(request, branch=other).decode()))
        reply = _reply(request)
        if self.behaviour == "binary_ok":
            half = len(reply) // 2
            return ws.send(BytesMessage(data=reply[:half], message_finished=False)) + ws.send(
                BytesMessage(data=reply[half:], message_finished=True)
            )
        return ws.send(TextMessage(data=reply.decode()))


def start_hostile_ws_peer(behaviour: str, host: str = "127.0.0.1") -> HostileWsPeer:
    """A HostileWsPeer listening on a free loopback port."""
    return HostileWsPeer(behaviour, host).start()
