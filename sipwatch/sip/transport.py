"""SIP transports over asyncio: UDP, TCP and TLS. The only socket code in sipwatch's SIP layer.

Owns: opening a connected socket to one target, framing (datagram = message; streams by
Content-Length), and turning socket-level failures into precise kinds at once:
ICMP port-unreachable on a connected UDP socket and RST/ECONNREFUSED on TCP become "refused"
(not a timeout), certificate and handshake failures become "tls_error". Must not know:
transactions, timers or probes; it hands parsed messages and failures to a Listener.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol

from sipwatch.errors import SipParseError, TransportError
from sipwatch.sip.message import MAX_MESSAGE_SIZE, Message, StreamFramer, parse_message

RELIABLE = {"udp": False, "tcp": True, "tls": True}
_BRANCH_IN_BYTES = re.compile(rb"branch=(z9hG4bK[A-Za-z0-9\-.!%*_+`'~]+)")


@dataclass(frozen=True, slots=True)
class TlsOptions:
    verify: bool = True  # verify the peer certificate and its name; on by default
    ca_file: str | None = None  # PEM bundle; None = the system trust store
    server_name: str | None = None  # SNI and the name checked; default: the target hostname
    cert_file: str | None = None  # client certificate (mutual TLS), optional
    key_file: str | None = None


class Listener(Protocol):
    def on_message(self, message: Message) -> None: ...

    def on_malformed(self, error: SipParseError, branch: str | None) -> None:
        """Bytes that are not SIP. `branch` is ours if one could be read from them."""

    def on_error(self, kind: str, detail: str) -> None:
        """The transport failed for good (kind: refused, unreachable, malformed...)."""


def classify_os_error(exc: OSError) -> tuple[str, str]:
    """Map a socket error to (outcome kind, detail) once, here at the edge."""
    code = exc.errno
    name = errno.errorcode.get(code or 0, "")
    if isinstance(exc, ConnectionRefusedError | ConnectionResetError) or code in (
        errno.ECONNREFUSED,
        errno.ECONNRESET,
    ):
        return "refused", f"connection refused ({name or type(exc).__name__})"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
        return "unreachable", f"{exc.strerror or name} ({name})"
    if code in (
        errno.EACCES,
        errno.EPERM,
        errno.EADDRNOTAVAIL,
        errno.EMFILE,
        errno.ENFILE,
        errno.EAFNOSUPPORT,
        errno.EINVAL,
    ):
        return "local_error", f"local socket error: {exc.strerror or name} ({name})"
    if isinstance(exc, TimeoutError):
        return "timeout", "connect timed out"
    return "refused", f"{exc.strerror or exc} ({name or type(exc).__name__})"


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

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._tx is not None:
                self._tx.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._datagram(data)

    def error_received(self, exc: Exception) -> None:
        # On a connected UDP socket Linux queues ICMP errors and hands them to the next
        # recv/send: ECONNREFUSED for port unreachable, EHOSTUNREACH for host unreachable.
        if isinstance(exc, OSError):
            kind, detail = classify_os_error(exc)
            if kind == "refused":
                detail = "ICMP port unreachable: nothing listens on the port"
            self.owner.listener.on_error(kind, detail)


class UdpTransport(SipTransport):
    name = "udp"
    reliable = False

    def __init__(self, listener: Listener, max_size: int) -> None:
        super().__init__()
        self.listener = listener
        self.max_size = max_size
        self._dtx: asyncio.DatagramTransport | None = None

    def send(self, data: bytes) -> None:
        if self.closed or self._dtx is None:
            return
        self._dtx.sendto(data)

    def _datagram(self, data: bytes) -> None:
        if not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 §4.4.1 uses STUN on UDP, but CRLF is seen too)
        try:
            message = parse_message(data, max_size=self.max_size, datagram=True)
        except SipParseError as exc:
            self.malformed += 1
            found = _BRANCH_IN_BYTES.search(data[:4096])
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


def make_tls_context(opts: TlsOptions) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=opts.ca_file)
        if opts.cert_file:
            ctx.load_cert_chain(opts.cert_file, opts.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError("local_error", f"cannot load TLS files: {exc}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not opts.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


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
) -> SipTransport:
    """Open a connected transport to host:port. Raises TransportError(kind, detail)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            if transport == "udp":
                udp = UdpTransport(listener, max_size)
                dtx, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(udp), remote_addr=(host, port)
                )
                udp._tx = udp._dtx = dtx
                udp.local = dtx.get_extra_info("sockname")[:2]
                udp.remote = (host, port)
                return udp
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
            )
            sock = stx.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream._tx = stream._wtx = stx
            stream.local = stx.get_extra_info("sockname")[:2]
            stream.remote = (host, port)
            if ctx is not None:
                cert = stx.get_extra_info("peercert")
                if cert and "notAfter" in cert:
                    stream.peer_cert_not_after = str(cert["notAfter"])
            return stream
    except TimeoutError as exc:
        raise TransportError("timeout", f"{transport} connect to {host}:{port} timed out") from exc
    except ssl.SSLCertVerificationError as exc:
        raise TransportError(
            "tls_error", f"certificate verification failed: {exc.verify_message or exc.reason}"
        ) from exc
    except ssl.SSLError as exc:
        raise TransportError("tls_error", f"TLS handshake failed: {exc.reason or exc}") from exc
    except OSError as exc:
        kind, detail = classify_os_error(exc)
        raise TransportError(kind, detail) from exc
