"""A UDP datagram (or a WebSocket message: the same call) through `parse_message`, then every
accessor sipwatch's transactions and probes read. Allowed: SipParseError."""

from __future__ import annotations

from sipwatch.errors import SipParseError
from sipwatch.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    Response,
    contact_expires_s,
    parse_message,
)


def TestOneInput(data: bytes) -> None:
    try:
        message = parse_message(data, datagram=True)
    except SipParseError:
        return
    # A message that parsed has a usable top Via and CSeq (parse_message checked them).
    assert message.top_via.host is not None
    number, method = message.cseq
    _ = message.call_id, message.top_via.branch
    for name, _value in message.headers:
        message.header_all(name)
    try:
        _ = message.vias
        message.expires_s()
        if isinstance(message, Response):
            message.retry_after_s()
        for contact in message.header_all("Contact"):
            contact_expires_s(contact)
    except SipParseError:
        pass
    # What we parsed we can write back, and it reads the same (a relay, a log of the bytes).
    # Written back, a message always has a Content-Length (a stream needs one): a datagram
    # of MAX_HEADERS fields without one has a field more than the parser takes.
    if len(message.headers) >= MAX_HEADERS and message.headers.get("Content-Length") is None:
        return
    again = parse_message(message.to_bytes(), max_size=2 * MAX_MESSAGE_SIZE, datagram=False)
    assert type(again) is type(message)
    assert again.body == message.body
    assert again.cseq == (number, method)
    assert again.top_via == message.top_via
