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
    DOWN = "down"  # the thing checked is absent: process not running, VIP not held here
    HUNG = "hung"  # present but frozen: every process of the group stopped (T) or zombie
    DEGRADED = "degraded"  # works, but redundancy is lost (e.g. DRBD peer disconnected)
    LOCAL_ERROR = "local_error"  # sipwatch could not probe: never the peer's fault

    @property
    def alive(self) -> bool:
        return self is Outcome.OK


#: The ProbeResult.extra key a probe sets, to the missing binary's name (e.g. "drbdsetup"),
#: when it could not run because a required tool is not installed. Pair it with outcome
#: local_error. `sipwatch check` exits 5 (OCF_ERR_INSTALLED) when any result carries it.
EXTRA_MISSING_TOOL = "missing_tool"


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
    # What the observation is about: "node" (this node serves or not) or "remote" (a server
    # reached through the VIP is down: a finding about that server, not this node, unless
    # the policy says so).
    scope: str = "node"
    # True when this observation alone means the node must not run or take over the PBX
    # resource (PBX not running, DRBD disk not UpToDate), whatever other probes say.
    blocks_takeover: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.outcome, Outcome):
            raise TypeError(f"outcome must be an Outcome, not {self.outcome!r}")
        if self.rtt_ms is not None and self.rtt_ms < 0:
            raise ValueError("rtt_ms must be >= 0")
        if self.scope not in ("node", "remote"):
            raise ValueError(f"scope must be 'node' or 'remote', not {self.scope!r}")

    @property
    def alive(self) -> bool:
        return self.outcome.alive

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = str(self.outcome)
        data["targets"] = [t.to_dict() for t in self.targets]
        return data


class Verdict(enum.StrEnum):
    """The node's health as published to Pacemaker (`#health-sipwatch`) and load balancers."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a verdict is what it is: which probe, which outcome, since when (monotonic s).

    `outcome` is an Outcome value, or "slow" (smoothed RTT above the policy's threshold).
    `effect` is what this reason did to the verdict: "red", "yellow" or "none" (reported
    only). `local` flags a local_error: sipwatch could not probe, and that never counts
    toward failover (effect "none"), however loudly it is reported.
    """

    probe: str
    outcome: str
    since_s: float | None
    detail: str = ""
    effect: str = "none"
    local: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy engine concluded at `at_s` (monotonic seconds)."""

    verdict: Verdict
    score: int  # 0-100, 100 = fully healthy
    reasons: tuple[Reason, ...] = ()
    eligible: bool = True  # may this node run / take over the PBX resource?
    at_s: float = 0.0
    # Is this node the active one (policy `active_when`)? On a standby, probes of a service
    # that runs only on the active node are reported but not judged.
    active: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.score <= 100:
            raise ValueError("score must be within 0-100")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        return data
