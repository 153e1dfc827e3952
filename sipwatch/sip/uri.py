"""SIP and SIPS URIs (RFC 3261 §19.1), just enough for a client that probes servers.

Owns: parsing `sip:`/`sips:` URIs into a frozen value and printing them back. Must not know:
DNS or sockets (RFC 3263 resolution lives in `resolve.py`).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

from sipwatch.errors import SipUriError
from sipwatch.numbers import ascii_int

TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")

# RFC 3261 §25.1, each matched whole (fullmatch: `$` would also match before a trailing
# newline, and a CR/LF in a URI we print ends up in a Request-URI or a To header).
# hostname: labels of alphanum and '-', optional trailing dot.
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?"
)
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"  # alphanum / mark
_ESCAPED = r"%[0-9A-Fa-f]{2}"
# user = 1*( unreserved / escaped / user-unreserved ); '?' cannot occur: headers are cut first.
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
# pname = 1*paramchar; pvalue = 1*paramchar, paramchar = param-unreserved / unreserved / escaped.
_PARAMCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
# header = hname "=" hvalue; hname = 1*( hnv-unreserved / unreserved / escaped ), hvalue *(...).
_HNV = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})"
_HEADER = re.compile(rf"{_HNV}+={_HNV}*")


def is_ipv4(text: str) -> bool:
    """Dotted-quad IPv4 literal (inet_pton: no octal, no short forms; socket is imported
    anyway, ipaddress would cost the one-shot CLI a millisecond)."""
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        return False
    return True


def is_ipv6(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class SipUri:
    host: str  # hostname, IPv4 literal, or IPv6 literal without brackets
    scheme: str = "sip"
    user: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.scheme not in ("sip", "sips"):
            raise SipUriError(f"unsupported URI scheme {self.scheme!r}: want sip or sips")
        if self.port is not None and not 0 < self.port < 65536:
            raise SipUriError(f"port {self.port} out of range 1-65535")
        if not self.host:
            raise SipUriError("URI has no host")

    @property
    def transport(self) -> str | None:
        """The `transport` URI parameter, lower-cased, or None if absent."""
        value = self.param("transport")
        return value.lower() if value else None

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key.lower() == name.lower():
                return value if value is not None else ""
        return None

    @property
    def is_ip_literal(self) -> bool:
        return is_ipv4(self.host) or is_ipv6(self.host)

    @property
    def host_for_uri(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        out = f"{self.scheme}:"
        if self.user is not None:
            out += f"{self.user}@"
        out += self.host_for_uri
        if self.port is not None:
            out += f":{self.port}"
        for key, value in self.params:
            out += f";{key}" if value is None else f";{key}={value}"
        return out

    def with_user(self, user: str | None) -> SipUri:
        return SipUri(self.host, self.scheme, user, self.port, self.params)

    def without_params(self) -> SipUri:
        return SipUri(self.host, self.scheme, self.user, self.port)


def parse_uri(text: str) -> SipUri:
    """Parse `sip:[user[:password]@]host[:port][;params][?headers]` (RFC 3261 §19.1.1).

    A password in the URI is refused: it would end up in logs and in the Request-URI.
    Headers (`?...`) are checked, then dropped: they say how to build a request (§19.1.5),
    they are never part of a Request-URI, and a probe builds its own. An empty parameter value
    (`;x=`) is taken, as UAs print it; anything outside §25.1's characters is refused.
    """
    # Only ASCII whitespace: str.strip() also eats \x1c-\x1f, so a URI could print as one
    # string and read back as another.
    raw = text.strip(" \t\r\n")
    scheme, sep, rest = raw.partition(":")
    if not sep:
        raise SipUriError(f"not a SIP URI (no scheme): {raw!r}")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        raise SipUriError(f"unsupported URI scheme {scheme!r} in {raw!r}: want sip or sips")
    rest, question, headers = rest.partition("?")
    if question and not all(_HEADER.fullmatch(h) for h in headers.split("&")):
        raise SipUriError(f"invalid headers part in {raw!r}")
    user: str | None = None
    if "@" in rest:
        # Neither the user part nor uri-parameters may hold an unescaped '@' (§25.1), so
        # the first one ends the userinfo (headers after '?' were cut above).
        userinfo, rest = rest.split("@", 1)
        if ":" in userinfo:
            raise SipUriError("a password in the URI is not accepted; use a password file")
        if not _USER.fullmatch(userinfo):
            raise SipUriError(f"invalid user part in {raw!r}")
        user = userinfo
    hostport, *param_parts = rest.split(";")
    host, port = _split_hostport(hostport, raw)
    params: list[tuple[str, str | None]] = []
    for part in param_parts:
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not key:
            raise SipUriError(f"empty URI parameter name in {raw!r}")
        if not _PARAMCHARS.fullmatch(key) or (value and not _PARAMCHARS.fullmatch(value)):
            raise SipUriError(f"invalid URI parameter {part!r} in {raw!r}")
        params.append((key, value if eq else None))
    uri = SipUri(host=host, scheme=scheme, user=user, port=port, params=tuple(params))
    transport = uri.transport
    if transport is not None and transport not in TRANSPORTS:
        raise SipUriError(f"unknown transport {transport!r} in {raw!r}")
    return uri


def _split_hostport(hostport: str, raw: str) -> tuple[str, int | None]:
    port_text: str | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipUriError(f"unterminated IPv6 reference in {raw!r}")
        host = hostport[1:end].lower()
        tail = hostport[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise SipUriError(f"junk after IPv6 reference in {raw!r}")
            port_text = tail[1:]
        if not is_ipv6(host):
            raise SipUriError(f"invalid IPv6 address {host!r} in {raw!r}")
    else:
        host, colon, port_part = hostport.partition(":")
        if colon:
            port_text = port_part
        if not _HOSTNAME.fullmatch(host):
            raise SipUriError(f"invalid host {host!r} in {raw!r}")
        host = host.lower()
        last_label = host.rstrip(".").rsplit(".", 1)[-1]
        # all-numeric: must be a real IPv4 literal (§25.1 toplabel starts alpha). _HOSTNAME
        # let only ASCII through, but say so: isdigit() would take any Unicode digit.
        if last_label.isascii() and last_label.isdigit() and not is_ipv4(host):
            raise SipUriError(f"invalid IPv4 address {host!r} in {raw!r}")
    port: int | None = None
    if port_text is not None:
        # §25.1 port = 1*DIGIT, ASCII only; 0 cannot be connected to.
        port = ascii_int(port_text, f"port in {raw!r}", low=1, high=65535, error=SipUriError)
    return host, port
