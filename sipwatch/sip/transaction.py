"""The non-INVITE client transaction of RFC 3261 §17.1.2, sans-IO.

Owns: the state machine (Trying, Proceeding, Completed, Terminated), Timers E, F and K, and
response matching (§17.1.3). Must not know: sockets, asyncio, or the wall clock. Every method
that depends on time takes `now` (seconds, any monotonic origin), so tests drive the timers
without sleeping; the asyncio adapter in `client.py` feeds it real time.

Timers (§17.1.2.2, Table 4 of §A):
- Timer E (unreliable transports only): first T1, doubling up to T2 while Trying; every T2
  once a provisional response put the transaction in Proceeding.
- Timer F: 64*T1 (32 s with the default T1), or the caller's deadline if that comes first.
- Timer K: T4 on unreliable transports (absorbs retransmitted final responses), zero on
  reliable ones.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field

from sipwatch.errors import SipParseError
from sipwatch.sip.message import Request, Response

BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 §8.1.1.7
#: Our branch inside bytes that do not parse: tells which transaction a garbage reply was for.
BRANCH_IN_BYTES = re.compile(rb"branch=(z9hG4bK[A-Za-z0-9\-.!%*_+`'~]+)")


def new_branch() -> str:
    """A fresh, globally unique branch for a new transaction (§8.1.1.7)."""
    return BRANCH_MAGIC + os.urandom(10).hex()


@dataclass(frozen=True, slots=True)
class Timers:
    t1_s: float = 0.5  # RTT estimate (§17.1.1.1)
    t2_s: float = 4.0  # maximum retransmit interval for non-INVITE requests
    t4_s: float = 5.0  # maximum duration a message remains in the network

    def __post_init__(self) -> None:
        if not 0 < self.t1_s <= self.t2_s:
            raise ValueError("timers need 0 < t1_s <= t2_s")
        if self.t4_s < 0:
            raise ValueError("t4_s must be >= 0")


class State(enum.Enum):
    CALLING = "calling"  # built, not sent yet
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Exchange:
    """How one transaction ended, for the layers above: a final response, or a failure kind
    ("timeout", "refused", "unreachable", "malformed", "tls_error", "local_error") and a
    detail. Built by `ClientTransaction.exchange()` whatever drives the transaction."""

    request: Request
    response: Response | None
    failure: str | None
    detail: str
    rtt_s: float | None
    retransmissions: int
    provisional: Response | None = None


class Failure(enum.StrEnum):
    """Why a transaction ended without a final response."""

    TIMEOUT = "timeout"  # Timer F fired (or the caller's deadline)
    TRANSPORT = "transport"  # the transport layer reported an error (§17.1.4)


@dataclass(slots=True)
class ClientTransaction:
    """One non-INVITE client transaction. Create it, `start()`, then feed it `on_timer(now)`
    whenever `next_timer()` is due and `on_response()` for responses that `matches()`."""

    request: Request
    reliable: bool
    timers: Timers = field(default_factory=Timers)
    deadline: float | None = None  # absolute time; Timer F fires at min(64*T1, deadline)

    state: State = State.CALLING
    branch: str = ""
    method: str = ""
    retransmissions: int = 0
    provisional: Response | None = None
    final: Response | None = None
    failure: Failure | None = None
    failure_detail: str = ""
    duplicates: int = 0  # retransmitted final responses absorbed in Completed
    first_sent_at: float | None = None
    final_at: float | None = None
    _timer_e: float | None = None
    _interval_e: float = 0.0
    _timer_f: float | None = None
    _timer_k: float | None = None

    def __post_init__(self) -> None:
        if self.request.method in ("INVITE", "ACK"):
            raise ValueError("this is the non-INVITE client transaction (§17.1.2)")
        branch = self.request.top_via.branch
        if not branch or not branch.startswith(BRANCH_MAGIC):
            raise ValueError("request needs a top Via with an RFC 3261 branch (z9hG4bK...)")
        self.branch = branch
        self.method = self.request.method

    @property
    def key(self) -> tuple[str, str]:
        return self.branch, self.method

    @property
    def done(self) -> bool:
        """True once the caller has its answer: a final response or a failure."""
        return self.final is not None or self.failure is not None

    @property
    def rtt_s(self) -> float | None:
        """Time from the first transmission to the final response. With retransmissions this
        is what a user agent experiences, not the network RTT (which is ambiguous then)."""
        if self.first_sent_at is None or self.final_at is None:
            return None
        return self.final_at - self.first_sent_at

    def start(self, now: float) -> bytes:
        """Enter Trying; return the bytes to hand to the transport (§17.1.2.2)."""
        if self.state is not State.CALLING:
            raise RuntimeError("transaction already started")
        self.state = State.TRYING
        self.first_sent_at = now
        fire_f = now + 64 * self.timers.t1_s
        if self.deadline is not None:
            fire_f = min(fire_f, self.deadline)
        self._timer_f = fire_f
        if not self.reliable:  # §17.1.2.2: Timer E only for unreliable transports
            self._interval_e = self.timers.t1_s
            self._timer_e = now + self._interval_e
        return self.request.to_bytes()

    def next_timer(self) -> float | None:
        """When `on_timer` must next be called, or None when nothing is pending."""
        pending = [t for t in (self._timer_e, self._timer_f, self._timer_k) if t is not None]
        return min(pending) if pending else None

    def on_timer(self, now: float) -> bytes | None:
        """Fire every timer due at `now`. Returns bytes to retransmit, or None."""
        if self._timer_k is not None and now >= self._timer_k:
            self._terminate()
            return None
        if self.state not in (State.TRYING, State.PROCEEDING):
            return None
        if self._timer_f is not None and now >= self._timer_f:
            # Timer F wins over a simultaneous Timer E: no retransmission after giving up.
            self.failure = Failure.TIMEOUT
            waited = now - (self.first_sent_at or now)
            self.failure_detail = f"no final response after {waited:.3f} s"
            self._terminate()
            return None
        if self._timer_e is not None and now >= self._timer_e:
            if self.state is State.TRYING:
                self._interval_e = min(2 * self._interval_e, self.timers.t2_s)
            else:  # Proceeding: every T2 (§17.1.2.2)
                self._interval_e = self.timers.t2_s
            self._timer_e = now + self._interval_e
            self.retransmissions += 1
            return self.request.to_bytes()
        return None

    def matches(self, response: Response) -> bool:
        """§17.1.3: top Via branch and CSeq method equal to the request's."""
        try:
            return response.top_via.branch == self.branch and response.cseq[1] == self.method
        except SipParseError:
            return False

    def on_response(self, response: Response, now: float) -> bool:
        """Feed a matching response. Returns True when it is the final answer (first final
        response); provisional and retransmitted finals return False."""
        if self.state in (State.TRYING, State.PROCEEDING):
            if response.is_provisional:
                # The pending Timer E firing is kept; from the next one on the interval is
                # T2 (§17.1.2.2, Proceeding state).
                self.provisional = response
                self.state = State.PROCEEDING
                return False
            self.final = response
            self.final_at = now
            self.state = State.COMPLETED
            self._timer_e = None
            self._timer_f = None
            if self.reliable:  # Timer K is zero on reliable transports
                self._terminate()
            else:
                self._timer_k = now + self.timers.t4_s
            return True
        if self.state is State.COMPLETED and not response.is_provisional:
            self.duplicates += 1
        return False

    def on_transport_error(self, detail: str) -> None:
        """§17.1.4: a transport failure terminates the transaction at once."""
        if self.state in (State.TRYING, State.PROCEEDING, State.CALLING):
            self.failure = Failure.TRANSPORT
            self.failure_detail = detail
            self._terminate()

    def cancel(self) -> None:
        """The caller stopped waiting (e.g. cancelled): stop every timer, send nothing more."""
        if self.state is not State.TERMINATED and not self.done:
            self.failure = Failure.TIMEOUT
            self.failure_detail = "abandoned by the caller"
        self._terminate()

    def exchange(
        self,
        transport_failure: tuple[str, str] | None = None,
        malformed_since: tuple[float, str] | None = None,
    ) -> Exchange:
        """The outcome for the caller. `transport_failure` is the (kind, detail) the transport
        reported; `malformed_since` is (time, why) of the last unparsable reply from the
        peer: a timeout with only garbage received since the first send is `malformed`."""
        if self.final is not None:
            return Exchange(
                self.request,
                self.final,
                None,
                "",
                self.rtt_s,
                self.retransmissions,
                self.provisional,
            )
        kind, detail = transport_failure or ("timeout", self.failure_detail)
        if self.failure is Failure.TIMEOUT and malformed_since is not None:
            seen_at, why = malformed_since
            if self.first_sent_at is not None and seen_at >= self.first_sent_at:
                kind, detail = "malformed", f"only unparsable replies: {why}"
        return Exchange(
            self.request, None, kind, detail, None, self.retransmissions, self.provisional
        )

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._timer_e = self._timer_f = self._timer_k = None


@dataclass(slots=True)
class TransactionTable:
    """Client transactions by (branch, method) key, and counts of what matched none."""

    _by_key: dict[tuple[str, str], ClientTransaction] = field(default_factory=dict)
    unmatched: int = 0
    stray_requests: int = 0

    def add(self, tx: ClientTransaction) -> None:
        if tx.key in self._by_key:
            raise ValueError("branch already in use")
        self._by_key[tx.key] = tx

    def remove(self, tx: ClientTransaction) -> None:
        self._by_key.pop(tx.key, None)

    def match(self, response: Response) -> ClientTransaction | None:
        try:
            key = (response.top_via.branch or "", response.cseq[1])
        except SipParseError:
            self.unmatched += 1
            return None
        tx = self._by_key.get(key)
        if tx is None:
            self.unmatched += 1
        return tx

    def __len__(self) -> int:
        return len(self._by_key)

    def values(self) -> list[ClientTransaction]:
        return list(self._by_key.values())
