"""A TCP/TLS byte stream through `StreamFramer`, cut into chunks whose sizes come from the
input: split and coalesced messages, CRLF keep-alives between them. The invariant: the
messages a framer yields, and whether it fails, do not depend on how the bytes were chunked
(framing the whole input in one feed is the reference). Allowed: SipParseError.

Input layout: byte 0 says how many chunk-size bytes follow (1-16) and, in its top bit, whether
to use a small `max_size` (to reach the size limits with small inputs); the rest is the stream.
"""

from __future__ import annotations

from collections.abc import Iterable

from sipwatch.errors import SipParseError
from sipwatch.sip.message import MAX_MESSAGE_SIZE, Message, StreamFramer


def _frame(chunks: Iterable[bytes], max_size: int) -> tuple[list[Message], bool, int]:
    """Messages yielded, whether the framer raised SipParseError, bytes left buffered."""
    framer = StreamFramer(max_size=max_size)
    out: list[Message] = []
    try:
        for chunk in chunks:
            out.extend(framer.feed(chunk))
    except SipParseError:
        return out, True, framer.buffered
    return out, False, framer.buffered


def _chunks(stream: bytes, sizes: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = index = 0
    while pos < len(stream):
        size = sizes[index % len(sizes)] + 1  # 1-256 bytes
        out.append(stream[pos : pos + size])
        pos += size
        index += 1
    return out


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    count = (data[0] & 0x0F) + 1
    max_size = 200 + 8 * data[1] if data[0] & 0x80 else MAX_MESSAGE_SIZE
    sizes, stream = data[1 : 1 + count], data[1 + count :]
    if not sizes:
        return
    whole, whole_failed, whole_left = _frame([stream], max_size)
    split, split_failed, split_left = _frame(_chunks(stream, sizes), max_size)
    assert split_failed == whole_failed, (whole_failed, split_failed)
    if not whole_failed:
        assert split == whole
        assert split_left == whole_left
    for message in split:
        _ = message.top_via, message.cseq
