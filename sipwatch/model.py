"""Values shared across sipwatch: probe outcomes and probe results.

Owns: the vocabulary a probe reports in, and its JSON-ready form both ways: `to_dict` and its
inverse `from_dict` (`X.from_dict(x.to_dict()) == x`; `sipwatch check` rebuilds the daemon's
answer with it). `from_dict` is strict about types and raises ValueError naming the field for
anything it cannot take; keys it does not know are ignored (a newer daemon may add some), and
a missing key gets the field's default, or is an error when the field has none. Must not
know: how a probe is run or how results are judged (that is the policy's job).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn, TypeVar

_T = TypeVar("_T")


class Outcome(enum.StrEnum):
    """What a single probe observation found.

    `local_error` is special: it means sipwatch itself could not probe (bad config, missing
    permission, unreadable secret). It says nothing about the peer and must never count toward
    failover.
    """

    OK = "ok"  # answered with a status counted as alive
    BAD_STATUS = "bad_status"  # answered, but with a status not counted as alive
    DRAINING = "draining"  # 503 with Retry-After: alive but asking to be left alone
    NO_MEDIA = "no_media"  # a call was answered, but no RTP came back (one-way or no audio)
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

    @classmethod
    def from_dict(cls, data: object) -> ProbeResult:
        f = _Fields(data, "probe result")
        outcome = f.text("outcome")
        try:
            parsed = Outcome(outcome)
        except ValueError:
            f.fail("outcome", f"unknown outcome {outcome[:40]!r}")
        return f.build(
            cls,
            probe=f.text("probe"),
            kind=f.text("kind"),
            target=f.text("target"),
            outcome=parsed,
            transport=f.text("transport", ""),
            method=f.text("method", ""),
            status_code=f.optional_integer("status_code"),
            reason=f.text("reason", ""),
            rtt_ms=f.optional_number("rtt_ms"),
            retransmissions=f.integer("retransmissions", 0),
            resolved=f.text("resolved", ""),
            detail=f.text("detail", ""),
            retry_after_s=f.optional_number("retry_after_s"),
            tls_not_after=f.optional_text("tls_not_after"),
            extra=f.mapping("extra"),
            targets=tuple(ProbeResult.from_dict(t) for t in f.sequence("targets")),
            scope=f.text("scope", "node"),
            blocks_takeover=f.flag("blocks_takeover", False),
        )


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

    @property
    def text(self) -> str:
        """One line for logs and exit reasons: the detail, else "probe outcome"."""
        return self.detail or f"{self.probe} {self.outcome}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Reason:
        f = _Fields(data, "reason")
        return f.build(
            cls,
            probe=f.text("probe"),
            outcome=f.text("outcome"),
            since_s=f.optional_number("since_s", required=True),
            detail=f.text("detail", ""),
            effect=f.text("effect", "none"),
            local=f.flag("local", False),
        )


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

    @classmethod
    def from_dict(cls, data: object) -> Decision:
        f = _Fields(data, "decision")
        verdict = f.text("verdict")
        try:
            parsed = Verdict(verdict)
        except ValueError:
            f.fail("verdict", f"unknown verdict {verdict[:40]!r}")
        return f.build(
            cls,
            verdict=parsed,
            score=f.integer("score"),
            reasons=tuple(Reason.from_dict(r) for r in f.sequence("reasons")),
            eligible=f.flag("eligible", True),
            at_s=f.number("at_s", 0.0),
            active=f.flag("active", True),
        )


_REQUIRED: Any = object()


class _Fields:
    """Typed reads from one dict on its way back into a dataclass; every error is a
    ValueError naming the field (bool is not taken for a number, nor a number for a bool)."""

    def __init__(self, data: object, what: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.what = what

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ValueError(f"{self.what}: {key}: {problem}")

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            self.fail(key, "missing")
        return default

    def _wrong(self, key: str, value: object, expected: str) -> NoReturn:
        self.fail(key, f"expected {expected}, got {type(value).__name__}")

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            self._wrong(key, value, "a string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self._get(key, None)
        return None if value is None else self.text(key)

    def integer(self, key: str, default: Any = _REQUIRED) -> int:
        value = self._get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            self._wrong(key, value, "an integer")
        return value

    def optional_integer(self, key: str) -> int | None:
        value = self._get(key, None)
        return None if value is None else self.integer(key)

    def number(self, key: str, default: Any = _REQUIRED) -> float:
        value = self._get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            self._wrong(key, value, "a number")
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            self.fail(key, "number out of range")

    def optional_number(self, key: str, *, required: bool = False) -> float | None:
        value = self._get(key, _REQUIRED if required else None)
        return None if value is None else self.number(key)

    def flag(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self._wrong(key, value, "true or false")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self._wrong(key, value, "an object")
        return dict(value)

    def sequence(self, key: str) -> list[Any] | tuple[Any, ...]:
        value = self._get(key, ())
        if not isinstance(value, list | tuple):
            self._wrong(key, value, "a list")
        return value

    def build(self, cls: type[_T], **kw: Any) -> _T:
        """cls(**kw), its own validation (__post_init__) reported like ours."""
        try:
            return cls(**kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.what}: {exc}") from exc
