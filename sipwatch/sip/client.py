"""The asyncio adapter: drives sans-IO client transactions over one connected transport.

Owns: scheduling transaction timers on the event loop, routing responses to transactions,
turning transport failures into per-transaction failure kinds, and the digest retry
(RFC 3261 §22.2: a new branch and CSeq+1, at most one retry per challenge). Must not know:
sockets (that is `transport.py`) or probe outcomes (that is `sipwatch.probes`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sipwatch.errors import DigestError, SipParseError
from sipwatch.sip import digest
from sipwatch.sip.message import Message, Request, Response
from sipwatch.sip.transaction import (
    ClientTransaction,
    Failure,
    State,
    Timers,
    TransactionTable,
    new_branch,
)
from sipwatch.sip.transport import SipTransport, TlsOptions, connect


@dataclass(frozen=True, slots=True)
class Exchange:
    """How one transaction ended: a final response, or a failure kind with a detail."""

    request: Request
    response: Response | None
    failure: str | None  # "timeout" | "refused" | "unreachable" | "malformed" | ...
    detail: str
    rtt_s: float | None
    retransmissions: int
    provisional: Response | None = None


class SipConnection:
    """Transactions multiplexed over one connected transport (many may be in flight)."""

    def __init__(self, transport: SipTransport | None, timers: Timers) -> None:
        self.transport: SipTransport = transport  # type: ignore[assignment]
        self.timers = timers
        self.table = TransactionTable()
        self._waiters: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._handles: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._failures: dict[tuple[str, str], tuple[str, str]] = {}
        self._loop = asyncio.get_running_loop()
        self.last_malformed: tuple[float, str] | None = None
        self.dead: tuple[str, str] | None = None  # (kind, detail) once the transport failed

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
    ) -> SipConnection:
        conn = cls(None, timers or Timers())
        conn.transport = await connect(
            transport, host, port, conn, timeout_s=timeout_s, tls=tls, server_name=server_name
        )
        return conn

    @property
    def reliable(self) -> bool:
        return self.transport.reliable

    @property
    def local(self) -> tuple[str, int]:
        return self.transport.local

    def close(self) -> None:
        for key in list(self._handles):
            self._handles.pop(key).cancel()
        for tx in self.table.values():
            tx.cancel()
            self._wake(tx)
        self.transport.close()

    async def transact(self, request: Request, *, deadline: float) -> Exchange:
        """Run one non-INVITE client transaction to its end. `deadline` is loop time."""
        tx = ClientTransaction(request, self.reliable, self.timers, deadline)
        if self.dead is not None:
            return Exchange(request, None, self.dead[0], self.dead[1], None, 0)
        self.table.add(tx)
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters[tx.key] = waiter
        self.transport.send(tx.start(self._loop.time()))
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

    def _exchange(self, tx: ClientTransaction) -> Exchange:
        if tx.final is not None:
            return Exchange(
                tx.request, tx.final, None, "", tx.rtt_s, tx.retransmissions, tx.provisional
            )
        kind, detail = self._failures.pop(tx.key, ("timeout", tx.failure_detail))
        if tx.failure is Failure.TIMEOUT and self.last_malformed is not None:
            seen_at, why = self.last_malformed
            if tx.first_sent_at is not None and seen_at >= tx.first_sent_at:
                kind, detail = "malformed", f"only unparsable replies: {why}"
        return Exchange(tx.request, None, kind, detail, None, tx.retransmissions, tx.provisional)

    # -- timers ------------------------------------------------------------------------------
    def _schedule(self, tx: ClientTransaction) -> None:
        old = self._handles.pop(tx.key, None)
        if old is not None:
            old.cancel()
        when = tx.next_timer()
        if when is None:
            if tx.state is State.TERMINATED:
                self._forget(tx)
            return
        self._handles[tx.key] = self._loop.call_at(when, self._fire, tx)

    def _fire(self, tx: ClientTransaction) -> None:
        self._handles.pop(tx.key, None)
        data = tx.on_timer(self._loop.time())
        if data is not None:
            self.transport.send(data)
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
        if not isinstance(message, Response):
            self.table.stray_requests += 1  # we are a client only; requests are ignored
            return
        tx = self.table.match(message)
        if tx is None:
            return
        if tx.on_response(message, self._loop.time()):
            self._wake(tx)
        self._schedule(tx)

    def on_malformed(self, error: SipParseError, branch: str | None) -> None:
        self.last_malformed = (self._loop.time(), str(error))
        if branch is None:
            return
        for tx in self.table.values():
            if tx.branch == branch:
                self._fail(tx, "malformed", f"unparsable reply: {error}")

    def on_error(self, kind: str, detail: str) -> None:
        if self.transport is not None and self.transport.reliable:
            self.dead = (kind, detail)
        for tx in self.table.values():
            self._fail(tx, kind, detail)


# -- requests with digest authentication -------------------------------------------------------

#: Builds the request for a given CSeq number, branch and extra (auth) headers.
RequestFactory = Callable[[int, str, Sequence[tuple[str, str]]], Request]


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    attempted: bool = False  # an authenticated retry was sent
    rejected: bool = False  # the credentials were challenged again: wrong user or password
    error: str = ""  # the challenge could not be answered (unsupported algorithm...)
    algorithm: str = ""


def new_call_id() -> str:
    return secrets.token_hex(12)


def new_tag() -> str:
    return secrets.token_hex(6)


async def transact_with_auth(
    conn: SipConnection,
    factory: RequestFactory,
    *,
    method: str,
    uri: str,
    credentials: digest.Credentials | None,
    deadline: float,
    first_cseq: int = 1,
) -> tuple[Exchange, AuthOutcome, int]:
    """Send a request; answer a 401/407 digest challenge once (RFC 3261 §22.2).

    The retry uses a new branch and CSeq+1. A second challenge is answered again only when it
    says `stale=true` (RFC 7616 §3.3: the nonce expired, the credentials were fine), and never
    more than twice in all: a registrar that keeps challenging is reported, not looped on.
    Returns the last exchange, what happened with auth, and the last CSeq used.
    """
    cseq = first_cseq
    exchange = await conn.transact(factory(cseq, new_branch(), ()), deadline=deadline)
    auth = AuthOutcome()
    retries = 0
    while (
        credentials is not None
        and exchange.response is not None
        and exchange.response.status_code in (401, 407)
        and retries < 2
    ):
        response = exchange.response
        proxy = response.status_code == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenge = digest.choose_challenge(response.header_all(name), proxy=proxy)
        except DigestError as exc:
            return exchange, AuthOutcome(attempted=retries > 0, error=str(exc)), cseq
        if retries == 1 and not challenge.stale:
            return exchange, AuthOutcome(True, True, "", challenge.algorithm), cseq
        value = digest.authorization(challenge, credentials, method, uri)
        header = "Proxy-Authorization" if proxy else "Authorization"
        cseq += 1
        retries += 1
        auth = AuthOutcome(True, False, "", challenge.algorithm)
        exchange = await conn.transact(
            factory(cseq, new_branch(), ((header, value),)), deadline=deadline
        )
    if retries and exchange.response is not None and exchange.response.status_code in (401, 407):
        auth = AuthOutcome(True, True, "", auth.algorithm)
    return exchange, auth, cseq
