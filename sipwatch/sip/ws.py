"""SIP over WebSocket (RFC 7118), sans-IO: the HTTP upgrade, then one SIP message per frame.

Owns: the client side of the WebSocket opening handshake (RFC 6455 §4.1) asking for the `sip`
subprotocol (RFC 7118 §4) and insisting that the server selected it; framing each outgoing
SIP message as one WebSocket message and parsing each incoming one as one SIP message
(RFC 7118 §5.1: text or binary frames, fragmented or not); answering pings and close frames;
the made-up `.invalid` Via/Contact host a WebSocket client uses (RFC 7118 §5.2); and turning
what the peer does wrong into failure kinds:

    a non-101 answer to the upgrade (403, 404, 503, a plain 200...)  bad_status
    a 101 without the `sip` subprotocol, a broken handshake          malformed
    a WebSocket protocol error, a message over the size limit         malformed
    a frame that is not SIP                                          Unparsable (per frame)
    MAX_UNPARSABLE such frames on one connection                     malformed
    a close frame, EOF                                                refused

Must not know: sockets, asyncio, transactions or timers. Both drivers (`transport.py` for
asyncio, `blocking.py` for one-shot runs) feed it the bytes they read and write the bytes it
returns, so they share every rule above. The WebSocket framing itself is wsproto's sans-IO
state machine (python-hyper, the h11 family): imported only when a WS/WSS probe runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from sipwatch.errors import SipParseError
from sipwatch.sip.message import MAX_MESSAGE_SIZE, Message, parse_message
from sipwatch.sip.target import DEFAULT_PORTS, WsOptions
from sipwatch.sip.transaction import BRANCH_IN_BYTES

SUBPROTOCOL = "sip"  # RFC 7118 §4: the WebSocket subprotocol name (IANA registered)
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})(?: ([^\r\n]*))?\r?\n")
_HEAD_LIMIT = 16_384  # the most of a refused upgrade's head kept for the reason phrase
#: Non-SIP WebSocket messages tolerated on one connection. One may be a stray keep-alive of an
#: odd kind (and is judged as on UDP); a stream of them is not a SIP server, and parsing a
#: flood of them would cost the event loop every other probe's timers.
MAX_UNPARSABLE = 16


def invalid_host() -> str:
    """A random `.invalid` host for Via and Contact (RFC 7118 §5.2, RFC 2606 §2): what a
    browser's SIP stack uses, having no address the server could reach it on."""
    return os.urandom(6).hex() + ".invalid"


# -- events: what feeding bytes to the client produced, in order ---------------------------------
@dataclass(frozen=True, slots=True)
class Upgraded:
    """101 Switching Protocols with the `sip` subprotocol: SIP may flow."""


@dataclass(frozen=True, slots=True)
class Received:
    message: Message


@dataclass(frozen=True, slots=True)
class Unparsable:
    """A WebSocket message that is not SIP; `branch` is ours if one could be read from it."""

    error: SipParseError
    branch: str | None


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes the protocol must send now (a pong, the answer to a close frame)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    """The connection is finished. `kind` is an Outcome value; `http_status` is set when the
    server refused the upgrade."""

    kind: str
    detail: str
    http_status: int | None = None


WsEvent = Upgraded | Received | Unparsable | Reply | Failed


class WsClient:
    """One client WebSocket connection carrying SIP: `handshake()`, then `receive()` the
    peer's bytes and `frame()` each SIP message to send; `close()` at the end."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        secure: bool,
        options: WsOptions | None = None,
        max_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.options = options or WsOptions()
        self.scheme = "wss" if secure else "ws"
        self.max_size = max_size
        self.sent_by_host = invalid_host()
        self.upgraded = False
        self.failed: Failed | None = None
        self.subprotocol: str | None = None
        self.frames_in = 0
        self.unparsable = 0
        self._ws = WSConnection(ConnectionType.CLIENT)
        host_text = f"[{host}]" if ":" in host else host
        # RFC 6455 §4.1 / RFC 7230 §5.4: Host names the port unless it is the scheme's own.
        self._host_header = (
            host_text if DEFAULT_PORTS[self.scheme] == port else f"{host_text}:{port}"
        )
        self._head = bytearray()  # the upgrade answer's head, for a refusal's reason phrase
        self._parts: list[bytes] = []  # fragments of the WebSocket message being received
        self._size = 0

    def handshake(self) -> bytes:
        """The HTTP/1.1 upgrade request (RFC 6455 §4.1), asking for `sip` (RFC 7118 §4)."""
        extra: list[tuple[bytes, bytes]] = []
        if self.options.origin is not None:
            extra.append((b"Origin", self.options.origin.encode("ascii")))
        return self._ws.send(
            Request(
                host=self._host_header,
                target=self.options.path,
                subprotocols=[SUBPROTOCOL],
                extra_headers=extra,
            )
        )

    def frame(self, data: bytes) -> bytes:
        """One SIP message as one WebSocket message (RFC 7118 §5.1): a text frame, as browsers
        send, unless the bytes are not UTF-8 (then binary). b"" when not open."""
        if not self.upgraded or self.failed is not None:
            return b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._ws.send(BytesMessage(data=data))
        return self._ws.send(TextMessage(data=text))

    def close(self) -> bytes:
        """A close frame (1000) while the connection is open, else b"" (RFC 6455 §5.5.1)."""
        if self._ws.state is not ConnectionState.OPEN:
            return b""
        try:
            return self._ws.send(CloseConnection(code=1000))
        except LocalProtocolError:
            return b""

    def receive(self, data: bytes) -> list[WsEvent]:
        """Feed bytes read from the connection; b"" means the peer closed it (EOF)."""
        if self.failed is not None:
            return []
        if not data:
            when = "" if self.upgraded else " during the WebSocket handshake"
            return [self._fail("refused", f"connection closed by the peer{when}")]
        if not self.upgraded and len(self._head) < _HEAD_LIMIT:
            self._head += data[: _HEAD_LIMIT - len(self._head)]
        try:
            self._ws.receive_data(data)
            return self._events()
        except RemoteProtocolError as exc:
            what = "bad WebSocket handshake" if not self.upgraded else "WebSocket protocol error"
            return [self._fail("malformed", f"{what}: {exc}")]
        except UnicodeDecodeError:
            # wsproto 1.3 decodes the 101's Connection/Upgrade/Sec-WebSocket-* lists as ASCII
            # and lets a non-ASCII byte escape as UnicodeDecodeError (found by fuzz target
            # ws_frames): the server's answer is broken, not sipwatch.
            what = "bad WebSocket handshake" if not self.upgraded else "WebSocket protocol error"
            return [self._fail("malformed", f"{what}: a header value that is not ASCII")]

    def _events(self) -> list[WsEvent]:
        out: list[WsEvent] = []
        for event in self._ws.events():
            if isinstance(event, AcceptConnection):
                out.append(self._accepted(event))
            elif isinstance(event, RejectConnection):
                out.append(self._refused(event.status_code))
            elif isinstance(event, TextMessage | BytesMessage):
                payload = event.data.encode("utf-8") if isinstance(event.data, str) else event.data
                out.extend(self._message_part(bytes(payload), event.message_finished))
            elif isinstance(event, Ping):
                out.append(Reply(self._ws.send(event.response())))
            elif isinstance(event, CloseConnection):
                out.extend(self._closed(event))
            # Pong, RejectData (the body of a refusal): nothing to do.
            if self.failed is not None:
                break
        return out

    def _accepted(self, event: AcceptConnection) -> WsEvent:
        self.subprotocol = event.subprotocol
        if event.subprotocol != SUBPROTOCOL:
            # wsproto (like every library) accepts a 101 without a subprotocol; RFC 7118 §4
            # does not: the server did not agree to speak SIP on this connection.
            return self._fail(
                "malformed",
                "101 Switching Protocols without Sec-WebSocket-Protocol: sip "
                "(RFC 7118 §4): the server did not agree to carry SIP",
            )
        self.upgraded = True
        self._head.clear()
        return Upgraded()

    def _refused(self, status: int) -> WsEvent:
        found = _STATUS_LINE.match(bytes(self._head))
        reason = found.group(2).decode("latin-1").strip() if found and found.group(2) else ""
        shown = f"HTTP {status} {reason}".strip()
        return self._fail(
            "bad_status", f"WebSocket upgrade refused: {shown} (want 101)", http_status=status
        )

    def _message_part(self, payload: bytes, finished: bool) -> list[WsEvent]:
        self._size += len(payload)
        if self._size > self.max_size:
            return [
                self._fail("malformed", f"WebSocket message exceeds the {self.max_size}-byte limit")
            ]
        self._parts.append(payload)
        if not finished:
            return []
        data = b"".join(self._parts)
        self._parts, self._size = [], 0
        self.frames_in += 1
        if not data.strip(b"\r\n"):
            return []  # a CRLF keep-alive in a frame of its own: not a message
        try:
            # The frame is the message boundary (RFC 7118 §5.1): Content-Length is optional,
            # as on a datagram.
            return [Received(parse_message(data, max_size=self.max_size, datagram=True))]
        except SipParseError as exc:
            found = BRANCH_IN_BYTES.search(data[:4096])
            out: list[WsEvent] = [Unparsable(exc, found.group(1).decode() if found else None)]
            self.unparsable += 1
            if self.unparsable >= MAX_UNPARSABLE:
                out.append(
                    self._fail(
                        "malformed",
                        f"{self.unparsable} WebSocket messages that are not SIP "
                        f"(last: {exc}): not a SIP WebSocket server",
                    )
                )
            return out

    def _closed(self, event: CloseConnection) -> list[WsEvent]:
        why = f"{event.code}{' ' + event.reason if event.reason else ''}"
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            # The peer's close frame: answer it (RFC 6455 §5.5.1), then the connection is gone.
            reply = self._ws.send(event.response())
            return [Reply(reply), self._fail("refused", f"WebSocket closed by the peer ({why})")]
        # wsproto reports a frame it could not parse as a close event of its own.
        return [self._fail("malformed", f"WebSocket protocol error: {why}")]

    def _fail(self, kind: str, detail: str, *, http_status: int | None = None) -> Failed:
        self.failed = Failed(kind, detail, http_status)
        return self.failed
