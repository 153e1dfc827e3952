"""Socket helpers shared by both SIP drivers: the asyncio transport (`transport.py`) and the
blocking one (`blocking.py`), so that neither imports the other.

Owns: opening a connected UDP socket (address family from the literal, source address, a
receive buffer big enough for many transactions), TLS client contexts and their options,
reading a verified peer's certificate expiry, and mapping socket and TLS errors onto outcome
kinds once, here at the edge. Must not know: SIP messages, transactions, asyncio, or probes.
`ssl` is imported only when TLS is used: the one-shot CLI over UDP/TCP never pays for it.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipwatch.errors import TransportError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "UDP_RCVBUF",
    "TlsOptions",
    "classify_os_error",
    "icmp_detail",
    "make_tls_context",
    "peer_not_after",
    "tls_error",
    "udp_socket",
]

UDP_RCVBUF = 1 << 20


@dataclass(frozen=True, slots=True)
class TlsOptions:
    verify: bool = True  # verify the peer certificate and its name; on by default
    ca_file: str | None = None  # PEM bundle; None = the system trust store
    server_name: str | None = None  # SNI and the name checked; default: the URI's host
    cert_file: str | None = None  # client certificate (mutual TLS), optional
    key_file: str | None = None


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


def icmp_detail(kind: str, detail: str) -> str:
    return "ICMP port unreachable: nothing listens on the port" if kind == "refused" else detail


def udp_socket(host: str, port: int, local_addr: tuple[str, int] | None = None) -> socket.socket:
    """A non-blocking UDP socket connected to host:port, so ICMP errors reach us; bound to
    `local_addr` first when given (a source address such as the VIP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        # Small datagrams cost ~2 KiB of buffer each in the kernel's accounting: the default
        # buffer holds only ~100 answers, too few when many transactions share the socket.
        # Capped by net.core.rmem_max.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def make_tls_context(opts: TlsOptions) -> ssl.SSLContext:
    import ssl

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


def peer_not_after(cert: Any) -> str | None:
    """notAfter of a verified peer certificate (Python only decodes verified ones)."""
    if isinstance(cert, dict) and "notAfter" in cert:
        return str(cert["notAfter"])
    return None


def tls_error(exc: Exception) -> TransportError:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason
        return TransportError("tls_error", f"certificate verification failed: {why}")
    if isinstance(exc, ssl.SSLError):
        return TransportError("tls_error", f"TLS handshake failed: {exc.reason or exc}")
    kind, detail = classify_os_error(exc) if isinstance(exc, OSError) else ("tls_error", str(exc))
    return TransportError(kind, detail)
