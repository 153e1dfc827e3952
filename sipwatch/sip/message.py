"""SIP messages: parse and build requests and responses (RFC 3261 §7, §20, §25).

Owns: bytes <-> Request/Response, header lookup (compact forms, several values per header,
folded lines), Via and CSeq parsing, the numbers of the headers sipwatch reads (Retry-After,
Expires, a Contact's expires), stream framing by Content-Length. Must not know: sockets,
asyncio, transactions or timers.

Every failure to parse raises SipParseError and nothing else: the bytes come from the network
and may be anything. Every number is read by `sipwatch.numbers.ascii_int` (ASCII digits only,
bounded): the status code, CSeq and Content-Length and the top Via's port, rport and ttl when
a message is parsed; Retry-After and Expires when asked for.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sipwatch.errors import SipParseError
from sipwatch.numbers import ascii_int

VERSION = "SIP/2.0"
#: Largest message accepted. A UDP datagram cannot exceed 65,535 bytes anyway; on streams a
#: peer that sends more without a message boundary is broken or hostile (RFC 3261 §18.3).
MAX_MESSAGE_SIZE = 65_535
MAX_HEADERS = 256
#: delta-seconds (RFC 3261 §25.1) are at most 2**32-1 (§20.19 Expires, §10.2.1.1).
MAX_DELTA_SECONDS = 2**32 - 1
MAX_CSEQ = 2**31 - 1  # §8.1.1.5: less than 2**31
MAX_CONTENT_LENGTH = 999_999  # far above MAX_MESSAGE_SIZE; six digits, as the framer reads

# RFC 3261 §7.3.3 compact forms (plus the later ones registered with IANA).
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "CSeq",
        "Max-Forwards",
        "User-Agent",
        "Server",
        "Allow",
        "Accept",
        "Expires",
        "Retry-After",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Authorization",
        "Proxy-Authorization",
        "Route",
        "Record-Route",
        "Warning",
        "Date",
        "Timestamp",
    )
}
# Headers whose values may be comma-joined on one line (RFC 3261 §7.3.1). Auth headers are
# not in this list: their values contain commas of their own.
_MULTI_VALUE = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "warning",
        "content-encoding",
        "in-reply-to",
    }
)
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
# [0-9], never \d: in a str pattern \d is any Unicode digit (fullwidth, Arabic-Indic...).
# The status code is taken as any three characters and read by ascii_int, so a broken one is
# reported as such ("status code ... is not an ASCII decimal number").
_STATUS_LINE = re.compile(r"^SIP/([0-9]+)\.([0-9]+) ([^ ]{3})(?: (.*))?$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) SIP/([0-9]+)\.([0-9]+)$")


@functools.lru_cache(maxsize=1024)
def _key(name: str) -> str:
    """Lookup key of a header name: lower-cased canonical form (bounded cache: names come
    from the network)."""
    return canonical_name(name).lower()


def canonical_name(name: str) -> str:
    """Full, conventionally capitalised header name for `name` (compact forms expanded)."""
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quoted strings and angle brackets."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    if '"' not in value and "<" not in value:
        return [p for p in (part.strip() for part in value.split(",")) if p]
    parts: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    angle = 0
    for ch in value:
        if quoted:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">" and angle:
            angle -= 1
        elif ch == "," and not angle:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


@dataclass(frozen=True, slots=True)
class Headers:
    """Header fields in wire order, names kept as written so a message re-serialises as read."""

    items: tuple[tuple[str, str], ...] = ()
    _index: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[str]] = {}
        for key, value in self.items:
            index.setdefault(_key(key), []).append(value)
        object.__setattr__(self, "_index", index)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, name: str) -> str | None:
        """First value of header `name` (any form), or None."""
        values = self._index.get(_key(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """All values of `name`, across repeated lines and comma-joined values."""
        want = _key(name)
        values = self._index.get(want, [])
        if want not in _MULTI_VALUE:
            return list(values)
        out: list[str] = []
        for value in values:
            out.extend(split_commas(value))
        return out


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42, rport per RFC 3581)."""

    transport: str
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...] = ()

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key.lower() == name.lower():
                return value if value is not None else ""
        return None

    @property
    def branch(self) -> str | None:
        return self.param("branch")


_VIA = re.compile(
    r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+(\[[0-9A-Fa-f:.]+\]|[^\s:;]+)"
    r"(?:\s*:\s*([^\s;]+))?\s*(.*)$",
    re.S,
)
# Via parameters whose value is a number (RFC 3261 §20.42 ttl, RFC 3581 §3 rport), bounds.
_VIA_NUMBERS = {"rport": (1, 65535), "ttl": (0, 255)}


def parse_via(value: str) -> Via:
    match = _VIA.match(value.strip())
    if not match:
        raise SipParseError(f"malformed Via value: {value[:80]!r}")
    transport, host, port_text, rest = match.groups()
    port = None
    if port_text is not None:
        port = ascii_int(port_text, "Via port", low=1, high=65535, error=SipParseError)
    params: list[tuple[str, str | None]] = []
    rest = rest.strip()
    if rest and not rest.startswith(";"):
        raise SipParseError(f"junk after Via sent-by: {rest[:40]!r}")
    for part in rest.split(";")[1:]:
        key, eq, val = part.strip().partition("=")
        key, val = key.strip(), val.strip()
        if not key:
            raise SipParseError("empty Via parameter")
        bounds = _VIA_NUMBERS.get(key.lower())
        if bounds is not None and eq:  # a bare `rport` is the request's "please fill in"
            ascii_int(val, f"Via {key}", low=bounds[0], high=bounds[1], error=SipParseError)
        params.append((key, val if eq else None))
    return Via(transport.upper(), host.strip("[]"), port, tuple(params))


def parse_cseq(value: str) -> tuple[int, str]:
    number, _, method = value.strip().partition(" ")
    method = method.strip()
    if not _TOKEN.match(method or "-"):
        raise SipParseError(f"malformed CSeq: {value[:80]!r}")
    return ascii_int(number, "CSeq number", low=0, high=MAX_CSEQ, error=SipParseError), method


def delta_seconds(text: str, field: str) -> int:
    """delta-seconds (RFC 3261 §25.1: 1*DIGIT), at most 2**32-1.

    §20.19 and §20.10 say a UA SHOULD treat a malformed Expires as 3600; sipwatch is a health
    probe, not a UA that must interoperate at any price, so a malformed value is reported
    (SipParseError, outcome `malformed`) rather than replaced by a guess.
    """
    return ascii_int(text, field, low=0, high=MAX_DELTA_SECONDS, error=SipParseError)


def contact_expires_s(value: str) -> int | None:
    """The `expires` parameter of one Contact value (RFC 3261 §20.10), None when absent.

    For a name-addr the parameters follow the `>`; for a bare addr-spec every `;` parameter
    is a header parameter (§20.10), so there is nothing to tell apart.
    """
    params = value.rsplit(">", 1)[-1] if "<" in value else value
    for part in params.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == "expires":
            return delta_seconds(val.strip(), "Contact expires")
    return None


@dataclass(frozen=True, slots=True)
class _Message:
    headers: Headers
    body: bytes
    # Parsed once on first use: matching a response needs both, every time.
    _via0: Via | None = field(default=None, init=False, repr=False, compare=False)
    _cseq: tuple[int, str] | None = field(default=None, init=False, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name)

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        if self._via0 is None:
            first = self.headers.get("Via")
            values = split_commas(first) if first is not None else []
            if not values:
                raise SipParseError("message has no Via")
            object.__setattr__(self, "_via0", parse_via(values[0]))
        assert self._via0 is not None
        return self._via0

    @property
    def cseq(self) -> tuple[int, str]:
        if self._cseq is None:
            value = self.headers.get("CSeq")
            if value is None:
                raise SipParseError("message has no CSeq")
            object.__setattr__(self, "_cseq", parse_cseq(value))
        assert self._cseq is not None
        return self._cseq

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    def expires_s(self) -> int | None:
        """The Expires header in seconds (RFC 3261 §20.19), None if absent. A value that is
        not delta-seconds raises SipParseError."""
        value = self.headers.get("Expires")
        return None if value is None else delta_seconds(value.strip(), "Expires")

    def _head_bytes(self, start_line: str) -> bytes:
        lines = [start_line]
        has_length = False
        for key, value in self.headers:
            if _key(key) == "content-length":
                has_length = True
                if value.strip() != str(len(self.body)):  # keep the peer's spacing if right
                    value = str(len(self.body))
            lines.append(f"{key}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Request(_Message):
    method: str = "OPTIONS"
    uri: str = ""

    def to_bytes(self) -> bytes:
        return self._head_bytes(f"{self.method} {self.uri} {VERSION}") + self.body


@dataclass(frozen=True, slots=True)
class Response(_Message):
    status_code: int = 0
    reason: str = ""

    def to_bytes(self) -> bytes:
        return self._head_bytes(f"{VERSION} {self.status_code} {self.reason}") + self.body

    @property
    def is_provisional(self) -> bool:
        return 100 <= self.status_code < 200

    def retry_after_s(self) -> float | None:
        """Retry-After in seconds (RFC 3261 §20.33: delta-seconds [comment] *(;param)), None
        if absent. A value that is not delta-seconds raises SipParseError."""
        value = self.headers.get("Retry-After")
        if value is None:
            return None
        head = value.split(";", 1)[0].split("(", 1)[0].strip()
        return float(delta_seconds(head, "Retry-After"))


Message = Request | Response


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    # RFC 3261 §7.5 asks for CRLF, but be liberal with bare LF from broken stacks.
    end = data.find(b"\n\n")
    if end >= 0:
        return data[:end], data[end + 2 :]
    raise SipParseError("no empty line after the headers (truncated message?)")


def _unfold(head: str) -> list[str]:
    """Header lines with continuation lines joined (RFC 3261 §7.3.1, LWS)."""
    lines: list[str] = []
    for raw in re.split(r"\r?\n", head):
        if raw[:1] in (" ", "\t"):
            if len(lines) < 2:
                raise SipParseError("continuation line before any header")
            lines[-1] = lines[-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw)
    return lines


def _parse_headers(lines: Iterable[str]) -> Headers:
    items: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            raise SipParseError("empty header line")
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")  # RFC 3261 §7.3.1 allows WS before the colon
        if not colon or not _TOKEN.match(name):
            raise SipParseError(f"malformed header line: {line[:80]!r}")
        items.append((name, value.strip()))
        if len(items) > MAX_HEADERS:
            raise SipParseError(f"more than {MAX_HEADERS} header fields")
    return Headers(tuple(items))


def _content_length(headers: Headers) -> int | None:
    values = headers._index.get("content-length")
    if not values:
        return None
    if len(set(values)) > 1:
        raise SipParseError("conflicting Content-Length values")
    return ascii_int(
        values[0].strip(), "Content-Length", low=0, high=MAX_CONTENT_LENGTH, error=SipParseError
    )


def parse_message(
    data: bytes, *, max_size: int = MAX_MESSAGE_SIZE, datagram: bool = True
) -> Message:
    """Parse one complete message.

    For datagrams (RFC 3261 §18.3), bytes past Content-Length are discarded and a body shorter
    than Content-Length is an error; a missing Content-Length means the rest of the datagram.
    With `datagram=False` the body must be exactly Content-Length (the framer already cut it).
    """
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds the {max_size}-byte limit")
    if not data:
        raise SipParseError("empty message")
    head_bytes, body = _split_head(data)
    try:
        head = head_bytes.decode("utf-8", "surrogateescape")
    except UnicodeDecodeError as exc:  # pragma: no cover - surrogateescape never fails
        raise SipParseError("undecodable header bytes") from exc
    if "\x00" in head:
        raise SipParseError("NUL byte in the header section")
    lines = _unfold(head)
    start, headers = lines[0].strip(), _parse_headers(lines[1:])
    length = _content_length(headers)
    if length is not None:
        if len(body) < length:
            raise SipParseError(f"body is {len(body)} bytes, Content-Length says {length}")
        if not datagram and len(body) != length:
            raise SipParseError("stream message body does not match Content-Length")
        body = body[:length]
    elif not datagram:
        raise SipParseError("Content-Length is mandatory on stream transports (§18.3)")

    message: Message
    if start.startswith("SIP/"):
        status = _STATUS_LINE.match(start)
        if not status:
            raise SipParseError(f"malformed status line: {start[:80]!r}")
        major, minor, code, reason = status.groups()
        if (major, minor) != ("2", "0"):
            raise SipParseError(f"unsupported SIP version SIP/{major}.{minor}")
        # RFC 3261 §7.2, §25.1: Status-Code = 3DIGIT, 100-699 (§21).
        status_code = ascii_int(
            code, "status code", low=100, high=699, digits=3, error=SipParseError
        )
        message = Response(headers, body, status_code=status_code, reason=reason or "")
    else:
        request = _REQUEST_LINE.match(start)
        if not request:
            raise SipParseError(f"malformed request line: {start[:80]!r}")
        method, uri, major, minor = request.groups()
        if (major, minor) != ("2", "0"):
            raise SipParseError(f"unsupported SIP version SIP/{major}.{minor}")
        message = Request(headers, body, method=method, uri=uri)
    _check_mandatory(message)
    return message


def _check_mandatory(message: Message) -> None:
    """RFC 3261 §8.1.1: To, From, CSeq, Call-ID and Via (Max-Forwards is request-only and
    not needed to match a response)."""
    for name in ("Via", "CSeq", "Call-ID", "From", "To"):
        if message.headers.get(name) is None:
            raise SipParseError(f"missing mandatory header {name}")
    message.top_via  # noqa: B018 - parses, raises SipParseError if broken
    seq_method = message.cseq[1]
    if isinstance(message, Request) and seq_method != message.method:
        raise SipParseError(f"CSeq method {seq_method} does not match {message.method}")


@dataclass(slots=True)
class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages by Content-Length (RFC 3261 §18.3).

    CRLF keep-alives between messages (RFC 5626 §3.5.1) are skipped. A message that does not
    parse raises SipParseError: the stream has lost its framing and must be closed.
    """

    max_size: int = MAX_MESSAGE_SIZE
    _buf: bytearray = field(default_factory=bytearray)
    keepalives: int = 0

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        buf = self._buf
        out: list[Message] = []
        pos = 0
        try:
            while True:
                start = pos
                while pos < len(buf) and buf[pos] in b"\r\n":
                    pos += 1
                if pos != start:
                    self.keepalives += 1
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > self.max_size:
                        raise SipParseError(f"no message boundary within {self.max_size} bytes")
                    return out
                length = _length_from_raw_head(bytes(buf[pos : end + 4]))
                total = end + 4 + length - pos
                if total > self.max_size:
                    raise SipParseError(f"message of {total} bytes exceeds {self.max_size}")
                if len(buf) - pos < total:
                    return out
                chunk = bytes(buf[pos : pos + total])
                pos += total
                out.append(parse_message(chunk, max_size=self.max_size, datagram=False))
        finally:
            del buf[:pos]  # one move per feed, not one per message

    @property
    def buffered(self) -> int:
        return len(self._buf)


_CONTENT_LENGTH = re.compile(rb"(?i)\r\n(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,6})[ \t]*\r\n")


def _length_from_raw_head(head: bytes) -> int:
    found = _CONTENT_LENGTH.findall(head)
    if len(found) == 1 and b"\r\n " not in head and b"\r\n\t" not in head:
        # The common case: the bytes pattern matched 1-6 ASCII digits, nothing else.
        # parse_message re-checks it in full.
        return int(found[0])
    text = head.decode("utf-8", "surrogateescape")
    lines = _unfold(text.rstrip("\r\n"))
    length = _content_length(_parse_headers(lines[1:]))
    if length is None:
        raise SipParseError("Content-Length is mandatory on stream transports (§18.3)")
    return length


def format_hostport(host: str, port: int | None = None) -> str:
    text = f"[{host}]" if ":" in host else host
    return text if port is None else f"{text}:{port}"


def build_request(
    method: str,
    request_uri: str,
    *,
    transport: str,
    local: tuple[str, int | None],
    from_uri: str,
    to_uri: str,
    call_id: str,
    from_tag: str,
    cseq: int,
    branch: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    max_forwards: int = 70,
) -> Request:
    """A request with the mandatory headers of RFC 3261 §8.1.1 and `rport` (RFC 3581 §3),
    so a server behind or in front of NAT answers to the port we sent from."""
    via = f"SIP/2.0/{transport.upper()} {format_hostport(*local)};branch={branch};rport"
    items: list[tuple[str, str]] = [
        ("Via", via),
        ("Max-Forwards", str(max_forwards)),
        ("From", f"<{from_uri}>;tag={from_tag}"),
        ("To", f"<{to_uri}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        *headers,
        ("Content-Length", str(len(body))),
    ]
    return Request(Headers(tuple(items)), body, method=method, uri=request_uri)
