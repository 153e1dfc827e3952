"""Raw, blocking SIP exchanges for the test rig: one request out, one final response back.

Owns: building a plain request (OPTIONS, REGISTER, ...), sending it over UDP, TCP or TLS from a
fresh socket on the loopback, reading the first final response (RFC 3261 §7.5 framing with
Content-Length for streams), and answering a digest challenge (RFC 7616 / RFC 2617, MD5 and
SHA-256, qop=auth or none).

Must not know: sipwatch.sip. This module is the rig's independent oracle — readiness checks,
rig self-tests and the capture script use it, so a bug in the client under test cannot hide
behind the same bug in the rig. No retransmissions (loopback), no transactions, no asyncio.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Exchange",
    "build_request",
    "digest_authorization",
    "format_host",
    "header",
    "register",
    "send_request",
    "status_code",
]

_FINAL_STATUS = 200


def format_host(host: str) -> str:
    """Host as it appears in a URI or Via: IPv6 literals in brackets (RFC 3261 §19.1.1)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def status_code(message: bytes) -> int | None:
    """Status code of a response (RFC 3261 §7.2), None for a request or garbage."""
    first = message.split(b"\r\n", 1)[0]
    match = re.fullmatch(rb"SIP/2\.0 ([1-6]\d\d) .*", first)
    return int(match.group(1)) if match else None


def header(message: bytes, name: str) -> str | None:
    """First value of header `name` (case-insensitive, no compact forms), None if absent."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    wanted = name.lower()
    for line in head.split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == wanted:
            return value.strip()
    return None


@dataclass(frozen=True)
class Exchange:
    """One request and the first final response to it.

    `response` is None when nothing came back within the timeout; over TCP/TLS it holds the
    raw bytes received when they never formed a complete message (garbage, a cut-off reply).
    """

    request: bytes
    response: bytes | None
    elapsed_s: float
    provisional: tuple[bytes, ...] = ()

    @property
    def status(self) -> int | None:
        return None if self.response is None else status_code(self.response)


def _token() -> str:
    return os.urandom(8).hex()


def build_request(
    *,
    method: str,
    ruri: str,
    transport: str,
    local: tuple[str, int],
    call_id: str | None = None,
    cseq: int = 1,
    from_uri: str | None = None,
    from_tag: str | None = None,
    to_uri: str | None = None,
    headers: Sequence[str] = (),
) -> bytes:
    """A request without body, its Via naming `local` (the socket it will be sent from).

    From/To default to the Request-URI without parameters, Call-ID and tag to random tokens.
    """
    via_transport = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}[transport]
    aor = ruri.split(";", 1)[0]
    lines = [
        f"{method} {ruri} SIP/2.0",
        # RFC 3261 §8.1.1.7: branch starts with the magic cookie; rport per RFC 3581.
        f"Via: SIP/2.0/{via_transport} {format_host(local[0])}:{local[1]};rport;"
        f"branch=z9hG4bK{_token()}",
        "Max-Forwards: 70",
        f"From: <{from_uri or aor}>;tag={from_tag or _token()}",
        f"To: <{to_uri or aor}>",
        f"Call-ID: {call_id or _token() + '@sipwatch-testbed'}",
        f"CSeq: {cseq} {method}",
        "User-Agent: sipwatch-testbed-rawsip",
        *headers,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_stream_message(sock: socket.socket | ssl.SSLSocket, buf: bytearray) -> bytes | None:
    """One message from a stream (RFC 3261 §18.3): headers up to CRLFCRLF, then the body."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            length = 0
            for line in bytes(buf[:end]).split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() in (b"content-length", b"l"):
                    length = int(value.strip() or b"0")
            total = end + 4 + length
            if len(buf) >= total:
                message = bytes(buf[:total])
                del buf[:total]
                return message
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf.extend(chunk)


def send_request(
    host: str,
    port: int,
    *,
    method: str = "OPTIONS",
    ruri: str | None = None,
    transport: str = "udp",
    user: str = "monitor",
    headers: Sequence[str] = (),
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    timeout_s: float = 1.0,
    ca_file: Path | None = None,
    server_hostname: str | None = None,
) -> Exchange:
    """Send one request to host:port and wait (bounded) for its first final response.

    `transport` is "udp", "tcp" or "tls". For TLS, `ca_file` verifies the server (the rig's
    self-signed cert); without it verification is off. Connection errors raise OSError.
    """
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"transport must be udp, tcp or tls, not {transport!r}")
    hostport = f"{format_host(host)}:{port}"
    if ruri is None:
        ruri = f"sip:{user}@{hostport}" + ("" if transport == "udp" else f";transport={transport}")
    call_id = call_id or f"{_token()}@sipwatch-testbed"
    from_tag = from_tag or _token()
    aor = f"sip:{user}@{hostport}"
    deadline = time.monotonic() + timeout_s
    start = time.monotonic()
    provisional: list[bytes] = []

    def build(local: tuple[str, int]) -> bytes:
        return build_request(
            method=method,
            ruri=ruri,
            transport=transport,
            local=local,
            call_id=call_id,
            cseq=cseq,
            from_uri=aor,
            from_tag=from_tag,
            to_uri=aor,
            headers=headers,
        )

    if transport == "udp":
        with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            request = build(sock.getsockname()[:2])
            start = time.monotonic()
            sock.sendto(request, (host, port))
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    break
                code = status_code(data)
                if code is not None and code < _FINAL_STATUS:
                    provisional.append(data)
                    continue
                return Exchange(request, data, time.monotonic() - start, tuple(provisional))
        return Exchange(request, None, time.monotonic() - start, tuple(provisional))

    raw = socket.create_connection((host, port), timeout=timeout_s)
    stream: socket.socket | ssl.SSLSocket = raw
    try:
        if transport == "tls":
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if ca_file is None:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            stream = context.wrap_socket(raw, server_hostname=server_hostname or host)
        request = build(stream.getsockname()[:2])
        start = time.monotonic()
        stream.sendall(request)
        buf = bytearray()
        while (left := deadline - time.monotonic()) > 0:
            stream.settimeout(left)
            try:
                message = _read_stream_message(stream, buf)
            except TimeoutError:
                break
            if message is None:
                break
            code = status_code(message)
            if code is not None and code < _FINAL_STATUS:
                provisional.append(message)
                continue
            return Exchange(request, message, time.monotonic() - start, tuple(provisional))
        # Bytes that never formed a message (garbage, a cut-off reply) are still the answer.
        partial = bytes(buf) or None
        return Exchange(request, partial, time.monotonic() - start, tuple(provisional))
    finally:
        stream.close()


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _challenge_params(challenge: str) -> dict[str, str]:
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not a Digest challenge: {scheme!r}")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return params


def digest_authorization(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """Authorization header value answering a WWW-Authenticate Digest challenge (RFC 7616 §3.4).

    Handles algorithm MD5 / SHA-256 and qop "auth" or absent (RFC 2069 compatibility form).
    """
    params = _challenge_params(challenge)
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    hash_fn = _HASHES[algorithm]

    def h(text: str) -> str:
        return hash_fn(text.encode()).hexdigest()

    realm, nonce = params["realm"], params["nonce"]
    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
    ]
    if qops:
        if "auth" not in qops:
            raise ValueError(f"unsupported qop {params['qop']!r}")
        cnonce = cnonce or _token()
        nc_text = f"{nc:08x}"
        response = h(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        parts += [f'response="{response}"', "qop=auth", f"nc={nc_text}", f'cnonce="{cnonce}"']
    else:
        parts.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
    parts.append(f"algorithm={algorithm}")
    if "opaque" in params:
        parts.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(parts)


def register(
    host: str,
    port: int,
    *,
    user: str,
    password: str,
    expires_s: int = 60,
    transport: str = "udp",
    domain: str | None = None,
    timeout_s: float = 1.0,
    ca_file: Path | None = None,
) -> tuple[Exchange, Exchange | None]:
    """REGISTER user, answering one 401 challenge. Returns (first, authenticated-or-None).

    The second exchange is None when the first answer was not a 401 with WWW-Authenticate.
    The Contact is a made-up loopback address: nothing is ever routed to it.
    """
    hostport = f"{format_host(host)}:{port}"
    ruri = f"sip:{domain or hostport}"
    call_id = f"{_token()}@sipwatch-testbed"
    from_tag = _token()
    contact = f"Contact: <sip:{user}@{format_host(host)}:9;transport={transport}>"
    extra = [contact, f"Expires: {expires_s}"]

    def send(cseq: int, headers: Sequence[str]) -> Exchange:
        return send_request(
            host,
            port,
            method="REGISTER",
            ruri=ruri,
            transport=transport,
            user=user,
            headers=headers,
            call_id=call_id,
            cseq=cseq,
            from_tag=from_tag,
            timeout_s=timeout_s,
            ca_file=ca_file,
        )

    first = send(1, extra)
    challenge = None if first.response is None else header(first.response, "WWW-Authenticate")
    if first.status != 401 or challenge is None:
        return first, None
    auth = digest_authorization(
        challenge, method="REGISTER", uri=ruri, username=user, password=password
    )
    return first, send(2, [*extra, f"Authorization: {auth}"])
