"""Request flows as generators, sans-IO: a flow yields the requests to send and is sent back
each one's Exchange; it returns its result. The same flow runs under asyncio
(`client.SipConnection`) and without it (`blocking.BlockingConnection`).

Owns: the digest retry of RFC 3261 §22.2 — the retry uses a new branch and CSeq+1, a
challenge is answered once, and a second challenge only when it says `stale=true`
(RFC 7616 §3.3: the nonce expired, the credentials were fine); never more than twice in all,
so a registrar that keeps challenging is reported, not looped on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sipwatch.sip.message import Request
from sipwatch.sip.transaction import Exchange, new_branch

if TYPE_CHECKING:
    from sipwatch.sip.digest import Credentials

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewDeadline:
    """Yielded by a flow to give the transactions after it a fresh budget (e.g. the
    unregister after a slow REGISTER); the driver sends back None."""

    budget_s: float


#: A flow: yields requests (or NewDeadline), is sent each request's Exchange, returns T.
Flow = Generator[Request | NewDeadline, Exchange | None, T]

#: The Via sent-by of a connection's requests (RFC 3261 §18.1.1), also the host of its
#: Contact: the local socket's address and port, or on WebSocket a made-up `.invalid` host
#: without a port (RFC 7118 §5.2). Drivers give it to the flows of every request they carry.
SentBy = tuple[str, int | None]


def send(request: Request) -> Flow[Exchange]:
    """`exchange = yield from send(request)`: one transaction inside a flow."""
    exchange = yield request
    assert exchange is not None, "drivers send an Exchange for every request"
    return exchange


#: Builds the request for a given CSeq number, branch and extra (auth) headers.
RequestFactory = Callable[[int, str, Sequence[tuple[str, str]]], Request]


def new_call_id() -> str:
    return os.urandom(12).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    attempted: bool = False  # an authenticated retry was sent
    rejected: bool = False  # challenged again after the retry: wrong user or password
    error: str = ""  # the challenge could not be answered (unsupported algorithm...)
    algorithm: str = ""


def with_auth(
    factory: RequestFactory,
    *,
    method: str,
    uri: str,
    credentials: Credentials | None,
    first_cseq: int = 1,
) -> Flow[tuple[Exchange, AuthOutcome, int]]:
    """Send a request; answer a 401/407 digest challenge. Returns the last exchange, what
    happened with auth, and the last CSeq used."""
    cseq = first_cseq
    exchange = yield from send(factory(cseq, new_branch(), ()))
    auth = AuthOutcome()
    retries = 0
    while (
        credentials is not None
        and exchange.response is not None
        and exchange.response.status_code in (401, 407)
        and retries < 2
    ):
        from sipwatch.errors import DigestError
        from sipwatch.sip import digest  # only when challenged: keeps one-shot imports small

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
        exchange = yield from send(factory(cseq, new_branch(), ((header, value),)))
    if retries and exchange.response is not None and exchange.response.status_code in (401, 407):
        auth = AuthOutcome(True, True, "", auth.algorithm)
    return exchange, auth, cseq
