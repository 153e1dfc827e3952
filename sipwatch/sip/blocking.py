"""Blocking SIP transports and a blocking transaction driver, without asyncio.

Owns: `BlockingConnection`, which runs the same sans-IO transactions and flows as
`client.SipConnection` with plain sockets and `select` — over WS/WSS through the same sans-IO
`ws.WsClient` as the asyncio transport. It exists for one thing: the one-shot `sipwatch probe`
is timed against `sipsak -s`, and importing asyncio alone costs more than sipsak's whole run.
Must not know: probes or outcomes.

The socket helpers it shares with the asyncio transport (connected UDP sockets, TLS
contexts, socket errors as outcome kinds) are `sockets.py`'s; it never imports `transport.py`,
nor `transport.py` it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import TYPE_CHECKING, TypeVar

from sipwatch.errors import SipParseError, TransportError
from sipwatch.sip.flows import Flow, NewDeadline
from sipwatch.sip.message import (
    MAX_MESSAGE_SIZE,
    Message,
    Request,
    Response,
    StreamFramer,
    parse_message,
)
from sipwatch.sip.sockets import (
    TlsOptions,
    classify_os_error,
    icmp_detail,
    make_tls_context,
    peer_not_after,
    tls_error,
    udp_socket,
)
from sipwatch.sip.target import RELIABLE, WS_TRANSPORTS
from sipwatch.sip.transaction import BRANCH_IN_BYTES, ClientTransaction, Exchange, Timers

if TYPE_CHECKING:
    from sipwatch.sip.flows import SentBy
    from sipwatch.sip.target import WsOptions
    from sipwatch.sip.ws import WsClient, WsEvent

T = TypeVar("T")


class BlockingConnection:
    """One connected transport driven with select(): one transaction at a time."""

    def __init__(
        self,
        transport: str,
        host: str,
        port: int,
        *,
        timeout_s: float,
        timers: Timers | None = None,
        tls: TlsOptions | None = None,
        server_name: str | None = None,
        max_size: int = MAX_MESSAGE_SIZE,
        local_addr: tuple[str, int] | None = None,
        ws: WsOptions | None = None,
    ) -> None:
        if transport not in RELIABLE:
            raise TransportError("local_error", f"unsupported transport {transport!r}")
        self.name = transport
        self.reliable = RELIABLE[transport]
        self.timers = timers or Timers()
        self.max_size = max_size
        self.peer_cert_not_after: str | None = None
        self.last_malformed: tuple[float, str] | None = None
        self._framer = StreamFramer(max_size=max_size)
        self._dead: tuple[str, str] | None = None
        # What a non-blocking read raises when no full record is there yet (TLS adds its
        # own "want read/write" errors to BlockingIOError).
        self._not_ready: tuple[type[BaseException], ...] = (BlockingIOError, InterruptedError)
        self._local_addr = local_addr
        self._ws: WsClient | None = None
        self._ws_options = ws
        self._sock = self._open(transport, host, port, timeout_s, tls, server_name)
        self.local: tuple[str, int] = self._sock.getsockname()[:2]

    def _open(
        self,
        transport: str,
        host: str,
        port: int,
        timeout_s: float,
        tls: TlsOptions | None,
        server_name: str | None,
    ) -> socket.socket:
        deadline = time.monotonic() + timeout_s
        try:
            if transport == "udp":
                return udp_socket(host, port, self._local_addr)
            sock = socket.create_connection(
                (host, port), timeout=timeout_s, source_address=self._local_addr
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError as exc:
            raise TransportError(
                "timeout", f"{transport} connect to {host}:{port} timed out"
            ) from exc
        except OSError as exc:
            raise TransportError(*classify_os_error(exc)) from exc
        if transport in ("tls", "wss"):
            opts = tls or TlsOptions()
            try:
                ctx = make_tls_context(opts)
                wrapped = ctx.wrap_socket(
                    sock, server_hostname=opts.server_name or server_name or host
                )
            except TransportError:
                sock.close()
                raise
            except (OSError, ValueError) as exc:
                sock.close()
                raise tls_error(exc) from exc
            self.peer_cert_not_after = peer_not_after(wrapped.getpeercert())
            import ssl

            self._not_ready += (ssl.SSLWantReadError, ssl.SSLWantWriteError)
            sock = wrapped
        if transport in WS_TRANSPORTS:
            try:
                self._upgrade(sock, host, port, server_name, deadline)
            except BaseException:
                sock.close()
                raise
        sock.setblocking(False)
        return sock

    def _upgrade(
        self, sock: socket.socket, host: str, port: int, server_name: str | None, deadline: float
    ) -> None:
        """The WebSocket upgrade (RFC 6455 §4.1), blocking, by `deadline` (connect's budget)."""
        from sipwatch.sip.ws import Failed, Reply, Upgraded, WsClient

        self._ws = client = WsClient(
            server_name or host,
            port,
            secure=self.name == "wss",
            options=self._ws_options,
            max_size=self.max_size,
        )
        try:
            sock.sendall(client.handshake())
            upgraded = False
            while not upgraded:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                # SIP that arrives with the 101 cannot answer a request not sent yet; a close
                # frame can, and fails the first transaction at once.
                for event in client.receive(sock.recv(65536)):
                    if isinstance(event, Reply):
                        sock.sendall(event.data)
                    elif isinstance(event, Failed) and upgraded:
                        self._dead = (event.kind, event.detail)
                    elif isinstance(event, Failed):
                        raise TransportError(
                            event.kind, event.detail, http_status=event.http_status
                        )
                    elif isinstance(event, Upgraded):
                        upgraded = True
        except TimeoutError as exc:
            raise TransportError(
                "timeout", f"{self.name} WebSocket upgrade to {host}:{port} timed out"
            ) from exc
        except OSError as exc:
            raise tls_error(exc) from exc

    @property
    def transport_name(self) -> str:
        return self.name

    @property
    def sent_by(self) -> SentBy:
        """The Via sent-by: the local address, or on WebSocket a `.invalid` host without a
        port (RFC 7118 §5.2)."""
        if self._ws is not None:
            return self._ws.sent_by_host, None
        return self.local

    def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(OSError):
                self._sock.send(self._ws.close())  # best effort: we are leaving anyway
        self._sock.close()

    def run(self, flow: Flow[T], *, deadline: float) -> T:
        """Drive a flow to its end; `deadline` is time.monotonic() time."""
        try:
            item = next(flow)
            while True:
                if isinstance(item, NewDeadline):
                    deadline = time.monotonic() + item.budget_s
                    item = flow.send(None)
                else:
                    item = flow.send(self.transact(item, deadline=deadline))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def transact(self, request: Request, *, deadline: float) -> Exchange:
        tx = ClientTransaction(request, self.reliable, self.timers, deadline)
        if self._dead is not None:
            return Exchange(request, None, self._dead[0], self._dead[1], None, 0)
        failure: tuple[str, str] | None = None
        self._send(tx.start(time.monotonic()), tx)
        while not tx.done:
            when = tx.next_timer()
            assert when is not None  # an unfinished transaction always has Timer F
            now = time.monotonic()
            if now >= when:
                # Due timers before more reading: a peer that keeps the socket readable (a
                # flood of garbage) must not hold Timer E, Timer F or the deadline back.
                data = tx.on_timer(now)
                if data is not None:
                    self._send(data, tx)
                continue
            pending = getattr(self._sock, "pending", lambda: 0)()  # TLS may hold read bytes
            if pending or select.select([self._sock], [], [], when - now)[0]:
                failure = self._receive(tx)
        return tx.exchange(failure, self.last_malformed)

    def _send(self, data: bytes, tx: ClientTransaction) -> None:
        if self._ws is not None:
            data = self._ws.frame(data)  # RFC 7118 §5.1: one message per WebSocket message
        try:
            self._sock.sendall(data) if self.reliable else self._sock.send(data)
        except self._not_ready:
            pass  # a full buffer is a lost datagram; Timer E (UDP) recovers
        except OSError as exc:
            self._fail(tx, *classify_os_error(exc))

    def _fail(self, tx: ClientTransaction, kind: str, detail: str) -> tuple[str, str]:
        if self.name == "udp":
            detail = icmp_detail(kind, detail)
        else:
            self._dead = (kind, detail)
        tx.on_transport_error(detail)
        return kind, detail

    def _receive(self, tx: ClientTransaction) -> tuple[str, str] | None:
        try:
            data = self._sock.recv(self.max_size + 1 if self.name == "udp" else 65536)
        except self._not_ready:
            return None
        except OSError as exc:
            return self._fail(tx, *classify_os_error(exc))
        if self._ws is not None:
            return self._ws_events(tx, self._ws.receive(data))
        if self.name == "udp":
            if not data.strip(b"\r\n"):
                return None
            try:
                messages: list[Message] = [parse_message(data, max_size=self.max_size)]
            except SipParseError as exc:
                self.last_malformed = (time.monotonic(), str(exc))
                found = BRANCH_IN_BYTES.search(data[:4096])
                if found and found.group(1).decode() == tx.branch:
                    return self._fail(tx, "malformed", f"unparsable reply: {exc}")
                return None
        else:
            if not data:
                return self._fail(tx, "refused", "connection closed by the peer")
            try:
                messages = self._framer.feed(data)
            except SipParseError as exc:
                return self._fail(tx, "malformed", f"malformed message on stream: {exc}")
        for message in messages:
            if isinstance(message, Response) and tx.matches(message):
                tx.on_response(message, time.monotonic())
        return None

    def _ws_events(self, tx: ClientTransaction, events: list[WsEvent]) -> tuple[str, str] | None:
        from sipwatch.sip.ws import Failed, Received, Reply, Unparsable

        for event in events:
            if isinstance(event, Reply):
                with contextlib.suppress(*self._not_ready):
                    self._sock.sendall(event.data)
            elif isinstance(event, Received):
                message = event.message
                if isinstance(message, Response) and tx.matches(message):
                    tx.on_response(message, time.monotonic())
            elif isinstance(event, Unparsable):
                # A frame that is not SIP leaves the framing intact (unlike a byte stream):
                # as on UDP, it fails our transaction at once only if it carries our branch.
                self.last_malformed = (time.monotonic(), str(event.error))
                if event.branch == tx.branch:
                    return self._fail(tx, "malformed", f"unparsable reply: {event.error}")
            elif isinstance(event, Failed):
                return self._fail(tx, event.kind, event.detail)
        return None
