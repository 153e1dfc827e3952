"""WebSocket bytes from the network as the library (wsproto) delivers them to sipwatch's SIP
over WebSocket client (`WsClient.receive`): byte 0 picks whether the input is the server's
upgrade answer itself, or the bytes after a correct 101 (frames: text, binary, fragments,
ping, close, garbage), and how they are split into reads. `receive` reports every problem as
a `Failed` event: no exception is allowed out."""

from __future__ import annotations

import base64
import hashlib
import re

from sipwatch.sip.ws import Failed, WsClient

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept(handshake: bytes) -> bytes:
    key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", handshake)
    assert key is not None
    token = base64.b64encode(hashlib.sha1(key.group(1) + _GUID).digest())  # RFC 6455 §4.2.2
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + token + b"\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
    )


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    control, body = data[0], data[1:]
    client = WsClient("127.0.0.1", 5066, secure=bool(control & 0x40), max_size=4096)
    handshake = client.handshake()
    if control & 0x80:  # the upgrade answer is the input
        stream = body
    else:
        events = client.receive(_accept(handshake))
        assert client.upgraded, events
        stream = body
    step = 1 + (control & 0x3F)  # reads of 1..64 bytes
    for start in range(0, len(stream), step):
        for event in client.receive(stream[start : start + step]):
            if isinstance(event, Failed):
                assert client.failed is event
    client.frame(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    client.close()
    client.receive(b"")
