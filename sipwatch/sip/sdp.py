"""SDP for a probe call (RFC 4566, offer/answer of RFC 3264): build one audio offer, read the
answer's audio stream. Hand-written, and only this subset, on purpose: the probe offers one
fixed stream and needs five facts from the answer, each of which must be checked (the bytes
come from the network), and the PyPI parsers either return untyped dicts that skip any line
they do not understand without saying so (sdp-transform) or are not maintained.

Owns: the offer's text, and parsing an answer into `AudioAnswer` (connection address, port,
payload types, direction). Must not know: sockets, SIP, RTP.

Every failure to read an answer raises SdpError and nothing else; `StreamRejected` (a
subclass) is the answerer's explicit "no" (port 0, RFC 3264 §6), as opposed to garbage.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from sipwatch.errors import SipParseError
from sipwatch.numbers import ascii_int

PCMU = 0  # RFC 3551 §6, static payload type
TELEPHONE_EVENT = 101  # dynamic (RFC 4733), our choice in the offer
MAX_SDP_SIZE = 16_384  # far above a real answer; the SIP message limit bounds it anyway
MAX_LINES = 512
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")  # RFC 4566 §6
_LINE = re.compile(r"^([a-z])=(.*)$")


class SdpError(SipParseError):
    """An SDP body that is not a usable answer (RFC 4566 syntax, or no audio stream)."""


class StreamRejected(SdpError):
    """The answerer refused the audio stream: port 0 (RFC 3264 §6)."""


def build_offer(
    address: str,
    port: int,
    *,
    session_id: int = 0,
    session_version: int = 0,
    ptime_ms: int = 20,
) -> bytes:
    """The offer (RFC 3264 §5): one audio stream, PCMU/8000 and telephone-event/8000
    (RFC 4733, events 0-16), sendrecv, at `address` (IPv4 or IPv6 literal) and `port`."""
    ip = ipaddress.ip_address(address)  # ValueError for anything but a literal: our bug
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range 1-65535")
    family = "IP4" if ip.version == 4 else "IP6"
    lines = [
        "v=0",
        f"o=sipwatch {session_id} {session_version} IN {family} {ip}",
        "s=sipwatch",
        f"c=IN {family} {ip}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {PCMU} {TELEPHONE_EVENT}",
        f"a=rtpmap:{PCMU} PCMU/8000",
        f"a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000",
        f"a=fmtp:{TELEPHONE_EVENT} 0-16",
        f"a=ptime:{ptime_ms}",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")  # RFC 4566 §5: CRLF


@dataclass(frozen=True, slots=True)
class AudioAnswer:
    """The first audio stream of an answer, with the session-level defaults applied."""

    address: str  # normalised literal (ipaddress), IPv6 without brackets
    port: int
    payloads: tuple[int, ...]
    direction: str = "sendrecv"
    rtpmap: tuple[tuple[int, str], ...] = field(default=())  # (payload type, "PCMU/8000")

    @property
    def accepts_pcmu(self) -> bool:
        return PCMU in self.payloads

    @property
    def sends(self) -> bool:
        """Will the answerer send media to us (RFC 3264 §6.1: its direction, its view)?"""
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")

    def encoding(self, payload: int) -> str | None:
        for number, name in self.rtpmap:
            if number == payload:
                return name
        return None


def _connection(value: str, where: str) -> str:
    """c=IN IP4|IP6 address (RFC 4566 §5.7): a unicast literal, not 0.0.0.0 (the RFC 2543
    hold, RFC 3264 §8.4) nor multicast; an FQDN is refused, the probe resolves nothing."""
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"malformed {where} c= line: {value[:80]!r}")
    text = parts[2]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise SdpError(f"{where} connection address {text[:60]!r} is not an IP literal") from None
    if (ip.version == 4) != (parts[1] == "IP4"):
        raise SdpError(f"{where} connection address {text!r} is not {parts[1]}")
    if ip.is_unspecified:
        raise SdpError(f"{where} connection address {text} (the RFC 2543 hold): no media")
    if ip.is_multicast:
        raise SdpError(f"{where} connection address {text} is multicast")
    return str(ip)


def parse_answer(body: bytes) -> AudioAnswer:
    """Read the first `m=audio` stream of an SDP answer. Raises SdpError (StreamRejected
    for port 0) for an empty body, bytes that are not SDP, no audio stream, a missing or
    unusable connection address, a port or payload type that is not a number in range."""
    if not body.strip():
        raise SdpError("no SDP body")
    if len(body) > MAX_SDP_SIZE:
        raise SdpError(f"SDP of {len(body)} bytes exceeds {MAX_SDP_SIZE}")
    try:
        text = body.decode("utf-8")  # RFC 4566 §5: UTF-8 in some fields, ASCII in the rest
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8 text") from None
    lines = [line for line in re.split(r"\r?\n", text) if line]
    if len(lines) > MAX_LINES:
        raise SdpError(f"SDP has more than {MAX_LINES} lines")
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP does not start with v=0")

    session_c: str | None = None
    session_dir: str | None = None
    media: list[tuple[str, list[tuple[str, str]]]] = []  # (m= value, its lines)
    for line in lines[1:]:
        match = _LINE.match(line)
        if match is None:
            raise SdpError(f"not an SDP line: {line[:80]!r}")
        kind, value = match.groups()
        if kind == "m":
            media.append((value, []))
        elif media:
            media[-1][1].append((kind, value))
        elif kind == "c":
            session_c = _connection(value, "session")
        elif kind == "a" and value in DIRECTIONS:
            session_dir = value

    for m_value, m_lines in media:
        parts = m_value.split()
        if len(parts) < 4:
            raise SdpError(f"malformed m= line: {m_value[:80]!r}")
        if parts[0] != "audio":
            continue
        port_text, proto, formats = parts[1], parts[2], parts[3:]
        if "/" in port_text:  # RFC 4566 §5.14 port/number-of-ports: one stream is enough
            port_text = port_text.split("/", 1)[0]
        port = ascii_int(port_text, "m= port", low=0, high=65535, error=SdpError)
        if proto not in ("RTP/AVP", "RTP/AVPF"):
            raise SdpError(f"audio stream uses {proto[:40]!r}, not plain RTP/AVP")
        payloads = tuple(
            ascii_int(f, "m= payload type", low=0, high=127, error=SdpError) for f in formats
        )
        if port == 0:
            raise StreamRejected("the answer rejected the audio stream (port 0)")
        address = session_c
        direction = session_dir or "sendrecv"
        rtpmap: list[tuple[int, str]] = []
        for kind, value in m_lines:
            if kind == "c":
                address = _connection(value, "media")
            elif kind == "a" and value in DIRECTIONS:
                direction = value
            elif kind == "a" and value.startswith("rtpmap:"):
                number, _, encoding = value[len("rtpmap:") :].partition(" ")
                pt = ascii_int(number, "rtpmap payload type", low=0, high=127, error=SdpError)
                rtpmap.append((pt, encoding.strip()))
        if address is None:
            raise SdpError("audio stream has no connection address (no c= line)")
        return AudioAnswer(address, port, payloads, direction, tuple(rtpmap))
    raise SdpError("SDP has no audio stream")
