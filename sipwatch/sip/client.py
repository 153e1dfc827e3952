"""The asyncio adapter: drives sans-IO client transactions over one connected transport.

Owns: scheduling transaction timers on the event loop, routing responses to transactions,
turning transport failures into per-transaction failure kinds. Must not know: sockets (that
is `transport.py`), request flows such as the digest retry (`flows.py`), or probe outcomes
(`sipwatch.probes`). `blocking.py` is the same driver without asyncio, for one-shot probes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TypeVar

from sipwatch import trace
from sipwatch.errors import SipParseError
from sipwatch.sip.flows import Flow, NewDeadline
from sipwatch.sip.message import Message, Request, Response
from sipwatch.sip.sockets import TlsOptions
from sipwatch.sip.target import WsOptions
from sipwatch.sip.transaction import (
    ClientTransaction,
    Exchange,
    State,
    Timers,
    TransactionTable,
)
from sipwatch.sip.transport import SipTransport, connect

T = TypeVar("T")


class SipConnection:
    """Transactions multiplexed over one connected transport (many may be in flight)."""

    def __init__(self, transport: SipTransport | None, timers: Timers) -> None:
        self.transport: SipTransport = transport  # type: ignore[assignment]
        self.timers = timers
        self.table = TransactionTable()
        self._waiters: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._handles: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._failures: dict[tuple[str, str], tuple[str, str]] = {}
        # Completed UDP transactions waiting out Timer K, in expiry order. Swept lazily on
        # each send and receive instead of one event-loop timer each: K only absorbs
        # retransmitted final responses, so a late sweep costs nothing but memory.
        self._timer_k: deque[tuple[float, ClientTransaction]] = deque()
        self._loop = asyncio.get_running_loop()
        self.last_malformed: tuple[float, str] | None = None
        self.dead: tuple[str, str] | None = None  # (kind, detail) once the transport failed
        # The probe run's trace (sipwatch/trace.py), if the caller keeps one; masked there.
        self._trace = trace.current()
        self._peer = ""

    @classmethod
    async def open(
        cls,
        transport: str,
        host: str,
        port: int,
        *,
        timeout_s: float,
        timers: Timers | None = None,
        tls: TlsOptions | None = None,
        server_name: str | None = None,
        local_addr: tuple[str, int] | None = None,
        ws: WsOptions | None = None,
    ) -> SipConnection:
        conn = cls(None, timers or Timers())
        conn._peer = f"{transport} {host}:{port}"
        conn.transport = await connect(
            transport,
            host,
            port,
            conn,
            timeout_s=timeout_s,
            tls=tls,
            server_name=server_name,
            local_addr=local_addr,
            ws=ws,
        )
        return conn

    def begin_run(self) -> None:
        """A kept connection starts another probe run: record into that run's trace, and
        forget the last run's unparsable reply."""
        self._trace = trace.current()
        self.last_malformed = None

    @property
    def reliable(self) -> bool:
        return self.transport.reliable

    @property
    def local(self) -> tuple[str, int]:
        return self.transport.local

    def close(self) -> None:
        self._timer_k.clear()
        for key in list(self._handles):
            self._handles.pop(key).cancel()
        for tx in self.table.values():
            tx.cancel()
            self._wake(tx)
        self.transport.close()

    async def run(self, flow: Flow[T], *, deadline: float) -> T:
        """Drive a flow (see flows.py) to its end; `deadline` is loop time."""
        try:
            item = next(flow)
            while True:
                if isinstance(item, NewDeadline):
                    deadline = self._loop.time() + item.budget_s
                    item = flow.send(None)
                else:
                    item = flow.send(await self.transact(item, deadline=deadline))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def transact(self, request: Request, *, deadline: float) -> Exchange:
        """Run one non-INVITE client transaction to its end. `deadline` is loop time."""
        tx = ClientTransaction(request, self.reliable, self.timers, deadline)
        if self.dead is not None:
            return Exchange(request, None, self.dead[0], self.dead[1], None, 0)
        self._sweep_timer_k(self._loop.time())
        self.table.add(tx)
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters[tx.key] = waiter
        self._send(tx.start(self._loop.time()))
        self._schedule(tx)
        try:
            await waiter
        except asyncio.CancelledError:
            tx.cancel()
            raise
        finally:
            self._waiters.pop(tx.key, None)
            if tx.state is State.TERMINATED:
                self._forget(tx)
        return self._exchange(tx)

    def _send(self, data: bytes) -> None:
        if self._trace is not None:
            self._trace.record("sent", self._peer, data)
        self.transport.send(data)

    def _exchange(self, tx: ClientTransaction) -> Exchange:
        return tx.exchange(self._failures.pop(tx.key, None), self.last_malformed)

    # -- timers ------------------------------------------------------------------------------
    def _schedule(self, tx: ClientTransaction) -> None:
        old = self._handles.pop(tx.key, None)
        if old is not None:
            old.cancel()
        when = tx.next_timer()
        if when is not None and tx.state is State.COMPLETED:
            self._timer_k.append((when, tx))
            return
        if when is None:
            if tx.state is State.TERMINATED:
                self._forget(tx)
            return
        self._handles[tx.key] = self._loop.call_at(when, self._fire, tx)

    def _sweep_timer_k(self, now: float) -> None:
        queue = self._timer_k
        while queue and queue[0][0] <= now:
            _, tx = queue.popleft()
            tx.on_timer(now)
            self._forget(tx)

    def _fire(self, tx: ClientTransaction) -> None:
        self._handles.pop(tx.key, None)
        data = tx.on_timer(self._loop.time())
        if data is not None:
            self._send(data)
        self._wake(tx)
        self._schedule(tx)

    def _wake(self, tx: ClientTransaction) -> None:
        waiter = self._waiters.get(tx.key)
        if waiter is not None and not waiter.done() and tx.done:
            waiter.set_result(None)

    def _forget(self, tx: ClientTransaction) -> None:
        handle = self._handles.pop(tx.key, None)
        if handle is not None:
            handle.cancel()
        if tx.key not in self._waiters:
            self.table.remove(tx)

    def _fail(self, tx: ClientTransaction, kind: str, detail: str) -> None:
        if tx.done:
            return
        self._failures[tx.key] = (kind, detail)
        tx.on_transport_error(detail)
        self._wake(tx)
        self._schedule(tx)

    # -- Listener (called by the transport) ------------------------------------------------------
    def on_message(self, message: Message) -> None:
        if self._trace is not None:
            self._trace.record("received", self._peer, message.to_bytes())
        if not isinstance(message, Response):
            self.table.stray_requests += 1  # we are a client only; requests are ignored
            return
        now = self._loop.time()
        self._sweep_timer_k(now)
        tx = self.table.match(message)
        if tx is None:
            return
        if tx.on_response(message, now):
            self._wake(tx)
        self._schedule(tx)

    def on_malformed(self, error: SipParseError, branch: str | None) -> None:
        self.last_malformed = (self._loop.time(), str(error))
        if self._trace is not None:
            self._trace.record("note", self._peer, f"unparsable reply: {error}")
        if branch is None:
            return
        for tx in self.table.values():
            if tx.branch == branch:
                self._fail(tx, "malformed", f"unparsable reply: {error}")

    def on_error(self, kind: str, detail: str) -> None:
        if self._trace is not None:
            self._trace.record("note", self._peer, f"transport {kind}: {detail}")
        # Before `open` returns (e.g. a WebSocket closed right after its upgrade) the
        # transport is not set yet: any failure then leaves the connection dead, too.
        if self.transport is None or self.transport.reliable:
            self.dead = (kind, detail)
        for tx in self.table.values():
            self._fail(tx, kind, detail)
