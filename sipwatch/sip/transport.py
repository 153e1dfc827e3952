"""SIP transports over asyncio: UDP, TCP, TLS, WS and WSS. The only asyncio socket code in
sipwatch's SIP layer; the socket helpers it shares with the blocking driver (UDP sockets, TLS
contexts, error kinds) are `sockets.py`'s.

Owns: opening a connected socket to one target, framing (datagram = message; streams by
Content-Length; WebSocket = one message per frame, through the sans-IO `ws.WsClient` that the
blocking driver uses too), and turning socket-level failures into precise kinds at once:
ICMP port-unreachable on a connected UDP socket and RST/ECONNREFUSED on TCP become "refused"
(not a timeout), certificate and handshake failures become "tls_error", a refused WebSocket
upgrade "bad_status". Must not know: transactions, timers or probes; it hands parsed messages
and failures to a Listener.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING, Protocol

from sipwatch.errors import SipParseError, TransportError
from sipwatch.sip.flows import SentBy
from sipwatch.sip.message import MAX_MESSAGE_SIZE, Message, StreamFramer, parse_message
from sipwatch.sip.sockets import (
    TlsOptions,
    classify_os_error,
    icmp_detail,
    make_tls_context,
    peer_not_after,
    tls_error,
    udp_socket,
)
from sipwatch.sip.target import WS_TRANSPORTS, WsOptions
from sipwatch.sip.transaction import BRANCH_IN_BYTES

if TYPE_CHECKING:
    from sipwatch.sip.ws import WsClient, WsEvent


class Listener(Protocol):
    def on_message(self, message: Message) -> None: ...

    def on_malformed(self, error: SipParseError, branch: str | None) -> None:
        """Bytes that are not SIP. `branch` is ours if one could be read from them."""

    def on_error(self, kind: str, detail: str) -> None:
        """The transport failed for good (kind: refused, unreachable, malformed...)."""


class SipTransport:
    """A connected transport to one peer. `send` never raises: failures reach the listener."""

    name: str
    reliable: bool
    local: tuple[str, int]
    remote: tuple[str, int]
    peer_cert_not_after: str | None = None  # TLS only, when the certificate was verified

    def __init__(self) -> None:
        self.closed = False
        self.malformed = 0
        self._tx: asyncio.BaseTransport | None = None

    @property
    def sent_by(self) -> SentBy:
        """The Via sent-by for requests on this transport (RFC 3261 §18.1.1)."""
        return self.local

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._tx is not None:
                self._tx.close()


class UdpTransport(SipTransport):
    """A connected UDP socket read straight from the event loop's selector.

    Connected, so the kernel reports ICMP errors for this peer (ECONNREFUSED on the next
    recv/send). Each readiness drains up to `_BATCH` datagrams into one reused buffer: with
    many transactions in flight that halves the event-loop work per answer compared with
    asyncio's one-datagram-per-wakeup DatagramTransport.
    """

    name = "udp"
    reliable = False
    _BATCH = 64

    def __init__(
        self,
        listener: Listener,
        max_size: int,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__()
        self.listener = listener
        self.max_size = max_size
        self.dropped_sends = 0
        self._sock = sock
        self._loop = loop
        self._buf = bytearray(max_size + 1)
        self.local = sock.getsockname()[:2]
        self.remote = sock.getpeername()[:2]
        loop.add_reader(sock.fileno(), self._read_ready)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            self.dropped_sends += 1  # a full send buffer is a lost datagram: Timer E recovers
        except OSError as exc:
            self._error(exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _read_ready(self) -> None:
        view = memoryview(self._buf)
        for _ in range(self._BATCH):
            if self.closed:
                return
            try:
                size = self._sock.recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._error(exc)
                continue
            self._datagram(bytes(view[:size]))

    def _error(self, exc: OSError) -> None:
        # Linux queues ICMP errors on a connected UDP socket and hands them to the next
        # recv/send: ECONNREFUSED for port unreachable, EHOSTUNREACH for host unreachable.
        kind, detail = classify_os_error(exc)
        self.listener.on_error(kind, icmp_detail(kind, detail))

    def _datagram(self, data: bytes) -> None:
        if not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 §4.4.1 uses STUN on UDP, but CRLF is seen too)
        try:
            message = parse_message(data, max_size=self.max_size, datagram=True)
        except SipParseError as exc:
            self.malformed += 1
            found = BRANCH_IN_BYTES.search(data[:4096])
            self.listener.on_malformed(exc, found.group(1).decode() if found else None)
            return
        self.listener.on_message(message)


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, owner: StreamTransport) -> None:
        self.owner = owner
        self.framer = StreamFramer(max_size=owner.max_size)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            # Framing is lost for good on a stream: fail everything and close (§18.3).
            self.owner.malformed += 1
            self.owner.listener.on_error("malformed", f"malformed message on stream: {exc}")
            self.owner.close()
            return
        for message in messages:
            self.owner.listener.on_message(message)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner.closed:
            return
        self.owner.closed = True
        if isinstance(exc, OSError):
            kind, detail = classify_os_error(exc)
        else:
            kind, detail = "refused", "connection closed by the peer"
        self.owner.listener.on_error(kind, detail)


class StreamTransport(SipTransport):
    def __init__(self, name: str, listener: Listener, max_size: int) -> None:
        super().__init__()
        self.name = name
        self.reliable = True
        self.listener = listener
        self.max_size = max_size
        self._wtx: asyncio.WriteTransport | None = None

    def send(self, data: bytes) -> None:
        if self.closed or self._wtx is None:
            return
        self._wtx.write(data)


class _WsProtocol(asyncio.Protocol):
    """Bytes to and from the sans-IO WebSocket client; `upgraded` resolves at the 101."""

    def __init__(self, owner: WsTransport) -> None:
        self.owner = owner
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.owner._wtx = transport
        transport.write(self.owner.ws.handshake())

    def data_received(self, data: bytes) -> None:
        self._handle(self.owner.ws.receive(data))

    def eof_received(self) -> bool | None:
        self._handle(self.owner.ws.receive(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner.closed:
            return
        if isinstance(exc, OSError):
            kind, detail = classify_os_error(exc)
            self._failed(kind, detail, None)
        else:
            self._handle(self.owner.ws.receive(b""))
        self.owner.closed = True

    def _handle(self, events: list[WsEvent]) -> None:
        from sipwatch.sip import ws

        owner = self.owner
        for event in events:
            if isinstance(event, ws.Reply):
                if owner._wtx is not None and not owner._wtx.is_closing():
                    owner._wtx.write(event.data)
            elif isinstance(event, ws.Upgraded):
                if not self.upgraded.done():
                    self.upgraded.set_result(None)
            elif isinstance(event, ws.Received):
                owner.listener.on_message(event.message)
            elif isinstance(event, ws.Unparsable):
                owner.malformed += 1
                owner.listener.on_malformed(event.error, event.branch)
            elif isinstance(event, ws.Failed):
                self._failed(event.kind, event.detail, event.http_status)

    def _failed(self, kind: str, detail: str, http_status: int | None) -> None:
        owner = self.owner
        if kind == "malformed":
            owner.malformed += 1
        if not self.upgraded.done():  # still in the handshake: connect() raises it
            self.upgraded.set_exception(TransportError(kind, detail, http_status=http_status))
        elif not owner.closed:
            owner.listener.on_error(kind, detail)
        owner.close()


class WsTransport(SipTransport):
    """SIP over WebSocket (RFC 7118) on a TCP (ws) or TLS (wss) connection."""

    def __init__(self, name: str, listener: Listener, ws: WsClient) -> None:
        super().__init__()
        self.name = name
        self.reliable = True
        self.listener = listener
        self.ws = ws
        self._wtx: asyncio.WriteTransport | None = None

    @property
    def sent_by(self) -> SentBy:
        return self.ws.sent_by_host, None  # RFC 7118 §5.2: a .invalid host, no port

    def send(self, data: bytes) -> None:
        if self.closed or self._wtx is None:
            return
        self._wtx.write(self.ws.frame(data))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._wtx is not None and not self._wtx.is_closing():
                self._wtx.write(self.ws.close())
                self._wtx.close()


async def connect(
    transport: str,
    host: str,
    port: int,
    listener: Listener,
    *,
    timeout_s: float,
    tls: TlsOptions | None = None,
    server_name: str | None = None,
    max_size: int = MAX_MESSAGE_SIZE,
    ssl_context: ssl.SSLContext | None = None,
    local_addr: tuple[str, int] | None = None,
    ws: WsOptions | None = None,
) -> SipTransport:
    """Open a connected transport to host:port, from `local_addr` when given (a source
    address such as the VIP; port 0 = any); for WS/WSS the WebSocket upgrade is part of
    it, within the same `timeout_s`. Raises TransportError(kind, detail)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            if transport == "udp":
                sock = udp_socket(host, port, local_addr)
                return UdpTransport(listener, max_size, sock, loop)
            if transport in WS_TRANSPORTS:
                return await _connect_ws(
                    transport, host, port, listener, timeout_s, tls, server_name, max_size,
                    ssl_context, local_addr, ws,
                )  # fmt: skip
            if transport not in ("tcp", "tls"):
                raise TransportError("local_error", f"unsupported transport {transport!r}")
            stream = StreamTransport(transport, listener, max_size)
            ctx: ssl.SSLContext | None = None
            if transport == "tls":
                opts = tls or TlsOptions()
                ctx = ssl_context or make_tls_context(opts)
                server_name = opts.server_name or server_name or host
            stx, _ = await loop.create_connection(
                lambda: _StreamProtocol(stream),
                host,
                port,
                ssl=ctx,
                server_hostname=server_name if ctx else None,
                ssl_handshake_timeout=timeout_s if ctx else None,
                local_addr=local_addr,
            )
            sock = stx.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream._tx = stream._wtx = stx
            stream.local = stx.get_extra_info("sockname")[:2]
            stream.remote = (host, port)
            if ctx is not None:
                stream.peer_cert_not_after = peer_not_after(stx.get_extra_info("peercert"))
            return stream
    except TimeoutError as exc:
        raise TransportError("timeout", f"{transport} connect to {host}:{port} timed out") from exc
    except ssl.SSLError as exc:
        raise tls_error(exc) from exc
    except OSError as exc:
        kind, detail = classify_os_error(exc)
        raise TransportError(kind, detail) from exc


async def _connect_ws(
    transport: str,
    host: str,
    port: int,
    listener: Listener,
    timeout_s: float,
    tls: TlsOptions | None,
    server_name: str | None,
    max_size: int,
    ssl_context: ssl.SSLContext | None,
    local_addr: tuple[str, int] | None,
    options: WsOptions | None,
) -> WsTransport:
    """TCP or TLS, then the WebSocket upgrade (RFC 6455 §4.1); the caller bounds the time."""
    from sipwatch.sip.ws import WsClient

    secure = transport == "wss"
    # The Host header names what the operator asked for (the URI's host), as SNI does.
    client = WsClient(server_name or host, port, secure=secure, options=options, max_size=max_size)
    stream = WsTransport(transport, listener, client)
    ctx: ssl.SSLContext | None = None
    if secure:
        opts = tls or TlsOptions()
        ctx = ssl_context or make_tls_context(opts)
        server_name = opts.server_name or server_name or host
    protocol = _WsProtocol(stream)
    stx, _ = await asyncio.get_running_loop().create_connection(
        lambda: protocol,
        host,
        port,
        ssl=ctx,
        server_hostname=server_name if ctx else None,
        ssl_handshake_timeout=timeout_s if ctx else None,
        local_addr=local_addr,
    )
    try:
        sock = stx.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream._tx = stx
        stream.local = stx.get_extra_info("sockname")[:2]
        stream.remote = (host, port)
        if ctx is not None:
            stream.peer_cert_not_after = peer_not_after(stx.get_extra_info("peercert"))
        await protocol.upgraded
    except BaseException:
        stream.close()
        stx.close()
        raise
    return stream
