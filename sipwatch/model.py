"""Values shared across sipwatch: probe outcomes and probe results.

Owns: the vocabulary a probe reports in. Must not know: how a probe is run or how results are
judged (that is the policy's job).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Outcome(enum.StrEnum):
    """What a single probe observation found.

    `local_error` is special: it means sipwatch itself could not probe (bad config, missing
    permission, unreadable secret). It says nothing about the peer and must never count toward
    failover.
    """

    OK = "ok"  # answered with a status counted as alive
    BAD_STATUS = "bad_status"  # answered, but with a status not counted as alive
    DRAINING = "draining"  # 503 with Retry-After: alive but asking to be left alone
    TIMEOUT = "timeout"  # no final response before Timer F or the probe deadline
    REFUSED = "refused"  # ICMP port unreachable (UDP) or RST (TCP): nothing listens
    UNREACHABLE = "unreachable"  # no route / ICMP host or network unreachable
    TLS_ERROR = "tls_error"  # TLS handshake or certificate verification failed
    MALFORMED = "malformed"  # the peer sent bytes that are not a valid SIP response
    DNS_ERROR = "dns_error"  # RFC 3263 resolution found no usable target
    LOCAL_ERROR = "local_error"  # sipwatch could not probe: never the peer's fault

    @property
    def alive(self) -> bool:
        return self is Outcome.OK


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One observation of one target by one probe. A value: probes return it, never raise.

    `resolved` names the concrete target that was probed, as `transport:host:port`
    (RFC 3263 result), or is empty when resolution itself failed.
    """

    probe: str
    kind: str
    target: str
    outcome: Outcome
    transport: str = ""
    method: str = ""
    status_code: int | None = None
    reason: str = ""
    rtt_ms: float | None = None
    retransmissions: int = 0
    resolved: str = ""
    detail: str = ""
    retry_after_s: float | None = None
    tls_not_after: str | None = None  # ISO 8601 expiry of the peer's certificate, when TLS
    extra: dict[str, Any] = field(default_factory=dict)
    # When RFC 3263 gave several targets, each one's own result; the fields above then
    # describe the target a user agent would have ended up using (see sipwatch.probes).
    targets: tuple[ProbeResult, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.outcome, Outcome):
            raise TypeError(f"outcome must be an Outcome, not {self.outcome!r}")
        if self.rtt_ms is not None and self.rtt_ms < 0:
            raise ValueError("rtt_ms must be >= 0")

    @property
    def alive(self) -> bool:
        return self.outcome.alive

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = str(self.outcome)
        data["targets"] = [t.to_dict() for t in self.targets]
        return data
