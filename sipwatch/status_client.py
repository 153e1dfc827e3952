"""The one client of the daemon's HTTP side for `sipwatch check` (a one-shot process):
`GET /status` (the daemon's whole state, as JSON) and `GET /check` (check's own output,
rendered by the daemon: sipwatch.check_fast).

Owns: talking to the daemon over HTTP with bounds on everything a slow or hostile peer could
stretch: the connect (`connect_timeout_s`), the whole answer after it (`read_timeout_s`, a
deadline for the sum of the reads, so a server trickling a byte at a time cannot hold check
for longer), the header block (64 KiB) and the body (`max_bytes`); and turning the body into
a JSON object. Every failure is a DaemonStatusError naming what went wrong; nothing else
escapes. Must not know: what the status means (sipwatch.model's from_dict, the check
command).

A plain socket and HTTP/1.0 (the server closes the connection after the answer, so there is
no chunked encoding to undo): `python -X importtime` puts `http.client` at ~70 ms and
`urllib.request` at ~100 ms against ~20 ms for `socket`, and the OCF monitor runs check every
few seconds. The socket is `_socket`'s, the C module under `socket` (~1 ms against ~12 ms:
`socket.py` builds its IntEnums with `enum` at import), and host names are handed to
getaddrinfo as bytes (a str makes it load the `idna` codec, ~5 ms); `json` is imported only
for /status.
"""

from __future__ import annotations

import _socket
import time

from sipwatch.errors import DaemonStatusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Bounds of one GET /status. 0.5 s each: a daemon on the same host answers in milliseconds,
#: and a check that gives up falls back to probing by itself.
CONNECT_TIMEOUT_S = 0.5
READ_TIMEOUT_S = 0.5
#: The largest body accepted: a status holds every probe's last result and short histories,
#: tens of KiB for a big config.
MAX_BODY_BYTES = 1 << 22
_MAX_HEAD_BYTES = 1 << 16


def get_status(
    host: str,
    port: int,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> dict[str, Any]:
    """The daemon's /status as a JSON object. Raises DaemonStatusError."""
    import json

    body = http_get(
        host,
        port,
        "/status",
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        max_bytes=max_bytes,
    )
    try:
        status = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise DaemonStatusError(f"/status is not JSON: {str(exc)[:100]}") from exc
    if not isinstance(status, dict):
        raise DaemonStatusError(f"/status is JSON but not an object: {type(status).__name__}")
    return status


def http_get(
    host: str,
    port: int,
    path: str,
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    max_bytes: int,
) -> bytes:
    """The body of a 200 answer to `GET path` (HTTP/1.0). Raises DaemonStatusError."""
    return http_request(
        host,
        port,
        path,
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        max_bytes=max_bytes,
    )[1]


def http_request(
    host: str,
    port: int,
    path: str,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> tuple[dict[bytes, bytes], bytes]:
    """The headers (names lower-cased, the last of each name) and body of a 200 answer to
    `GET path` (HTTP/1.0). Raises DaemonStatusError."""
    where = f"{host}:{port}"
    sock = _connect(host, port, connect_timeout_s, where)
    try:
        deadline = time.monotonic() + read_timeout_s
        shown = f"[{host}]" if ":" in host else host
        request = f"GET {path} HTTP/1.0\r\nHost: {shown}:{port}\r\nAccept: */*\r\n\r\n"
        try:
            sock.settimeout(read_timeout_s)
            sock.sendall(request.encode("ascii", "replace"))
            return _read_answer(sock, deadline, max_bytes, where)
        except TimeoutError as exc:
            raise DaemonStatusError(f"{where}: no full answer within {read_timeout_s} s") from exc
        except OSError as exc:
            raise DaemonStatusError(f"{where}: {exc}") from exc
    finally:
        sock.close()


def _connect(host: str, port: int, timeout_s: float, where: str) -> _socket.socket:
    """socket.create_connection, on `_socket`: each address getaddrinfo gives, in turn."""
    try:
        name = host.encode("ascii") if host.isascii() else host.encode("idna")
        infos = _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:  # ValueError: a host name IDNA cannot encode
        raise DaemonStatusError(f"no daemon on {where}: {exc}") from exc
    error: Exception = DaemonStatusError(f"no daemon on {where}: no address")
    for family, kind, proto, _, address in infos:
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout_s)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise DaemonStatusError(f"no daemon on {where}: {error}") from error


def _read_answer(
    sock: _socket.socket, deadline: float, max_bytes: int, where: str
) -> tuple[dict[bytes, bytes], bytes]:
    data = bytearray()
    head_end = -1
    length: int | None = None
    headers: dict[bytes, bytes] = {}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if head_end < 0:
            head_end = data.find(b"\r\n\r\n")
            if head_end < 0:
                if len(data) > _MAX_HEAD_BYTES:
                    raise DaemonStatusError(f"{where}: headers longer than {_MAX_HEAD_BYTES} B")
                continue
            length = _check_head(bytes(data[:head_end]), max_bytes, where, headers)
        body_size = len(data) - head_end - 4
        if body_size > max_bytes:
            raise DaemonStatusError(f"{where}: body larger than {max_bytes} B")
        if length is not None and body_size >= length:
            break
    if head_end < 0:
        raise DaemonStatusError(f"{where}: connection closed before the end of the headers")
    body = bytes(data[head_end + 4 :])
    if length is not None:
        if len(body) < length:
            raise DaemonStatusError(f"{where}: body cut short ({len(body)} of {length} B)")
        body = body[:length]
    return headers, body


def _check_head(head: bytes, max_bytes: int, where: str, headers: dict[bytes, bytes]) -> int | None:
    """Checks the status line and headers, fills `headers`; returns the Content-Length, if
    given."""
    status_line, *lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise DaemonStatusError(f"{where}: not an HTTP answer: {status_line[:60]!r}")
    if parts[1] != b"200":
        raise DaemonStatusError(f"{where}: HTTP {parts[1][:10].decode('ascii', 'replace')}")
    length: int | None = None
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = value
        if name == b"transfer-encoding" and value.lower() != b"identity":
            raise DaemonStatusError(f"{where}: unexpected Transfer-Encoding {value[:30]!r}")
        if name == b"content-length":
            if not value.isdigit() or len(value) > 12:  # bytes.isdigit: ASCII digits only
                raise DaemonStatusError(f"{where}: bad Content-Length {value[:30]!r}")
            length = int(value)
            if length > max_bytes:
                raise DaemonStatusError(f"{where}: body of {length} B, more than {max_bytes}")
    return length
