"""The header-value parsers on their own, with any text: Via, CSeq, a Contact's expires, the
comma splitting of multi-value headers, and SIP URIs (which also come from config files).
Byte 0 picks the parser; the rest is decoded as parse_message decodes a header section.
Allowed: SipParseError (headers), SipUriError (URIs)."""

from __future__ import annotations

from sipwatch.errors import SipParseError, SipUriError
from sipwatch.sip.message import (
    contact_expires_s,
    format_hostport,
    parse_cseq,
    parse_via,
    split_commas,
)
from sipwatch.sip.uri import parse_uri


def _via(text: str) -> None:
    via = parse_via(text)
    _ = via.branch, via.param("rport"), via.param("received")
    format_hostport(via.host, via.port)


def _vias(text: str) -> None:
    for value in split_commas(text):
        _via(value)


def _uri(text: str) -> None:
    try:
        uri = parse_uri(text)
    except SipUriError:
        return
    _ = uri.transport, uri.is_ip_literal, uri.without_params(), uri.with_user("probe")
    # A URI we print (logs, the Request-URI, To/From) reads back as the same URI.
    assert parse_uri(str(uri)) == uri, (text, str(uri))


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    text = data[1:].decode("utf-8", "surrogateescape")
    choice = data[0] % 5
    try:
        if choice == 0:
            _via(text)
        elif choice == 1:
            parse_cseq(text)
        elif choice == 2:
            contact_expires_s(text)
        elif choice == 3:
            _vias(text)
        else:
            _uri(text)
    except SipParseError:
        pass
