"""The policy schema: what a policy file may say, validated on construction (pydantic, frozen).

Owns: the keys of a policy, their defaults and bounds, and resolving the rule that applies to
one probe (`Policy.rule_for`: `[probes.NAME]` over `[kinds.KIND]` over `[defaults]`). Must not
know: files (sipwatch.policy.load reads them) or probe results (sipwatch.policy.engine).
Every key is documented in docs/policies.md; keep the two in step.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Role = Literal["critical", "major", "minor"]
RemoteMode = Literal["ignore", "yellow", "red"]
StandbyMode = Literal["judge", "ignore"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Frozen):
    """How one probe is judged. `[defaults]` is a complete Rule."""

    role: Role = "major"
    weight: float = Field(1.0, ge=0, le=1000)
    fall: int = Field(3, ge=1, le=1000)
    rise: int = Field(2, ge=1, le=1000)
    window_failures: int = Field(0, ge=0, le=1000)  # 0: the window rule is off
    window_s: float = Field(60.0, gt=0, le=86400)
    rtt_yellow_ms: float = Field(0.0, ge=0, le=600_000)  # 0: no latency threshold
    on_standby: StandbyMode = "judge"  # ignore: only judged while this node is active
    # After a failed run, run again after this settle instead of the full interval until the
    # failure is confirmed (`fall` in a row) or cleared (HAProxy's fastinter). 0: off.
    confirm_interval_s: float = Field(0.1, ge=0, le=3600)


class RuleOverride(_Frozen):
    """A `[kinds.KIND]` or `[probes.NAME]` section: any subset of a Rule's keys."""

    role: Role | None = None
    weight: float | None = Field(None, ge=0, le=1000)
    fall: int | None = Field(None, ge=1, le=1000)
    rise: int | None = Field(None, ge=1, le=1000)
    window_failures: int | None = Field(None, ge=0, le=1000)
    window_s: float | None = Field(None, gt=0, le=86400)
    rtt_yellow_ms: float | None = Field(None, ge=0, le=600_000)
    on_standby: StandbyMode | None = None
    confirm_interval_s: float | None = Field(None, ge=0, le=3600)


class Policy(_Frozen):
    """A whole policy file."""

    description: str = ""
    startup_grace_s: float = Field(30.0, ge=0, le=86400)
    # Probe names or kinds whose answer says "this node is the active one" (e.g. the VIP is
    # here). Empty, or none of them reported yet: the node counts as active.
    active_when: tuple[str, ...] = ()
    takeover_grace_s: float = Field(0.0, ge=0, le=86400)
    # A PBX found frozen (outcome hung) keeps its node red and ineligible this long after, even
    # once the process is gone or runs again: the node that froze does not take the PBX back
    # within seconds (Pacemaker restarts a stopped group where it prefers, and a node whose
    # verdict is green again the moment its hung PBX was killed is such a place). 0 = off.
    hung_hold_s: float = Field(0.0, ge=0, le=3600)
    remote_failures: RemoteMode = "yellow"
    draining_max_hold_s: float = Field(300.0, ge=0, le=86400)
    rtt_ewma_alpha: float = Field(0.3, gt=0, le=1)
    score_yellow_below: int = Field(90, ge=1, le=100)
    score_red_below: int = Field(50, ge=1, le=100)
    defaults: Rule = Field(default_factory=Rule)
    kinds: dict[str, RuleOverride] = Field(default_factory=dict)
    probes: dict[str, RuleOverride] = Field(default_factory=dict)

    @field_validator("score_red_below")
    @classmethod
    def _bands_in_order(cls, v: int, info: ValidationInfo) -> int:
        yellow = info.data.get("score_yellow_below")
        if yellow is not None and v >= yellow:
            raise ValueError(f"must be lower than score_yellow_below ({yellow})")
        return v

    def rule_for(self, probe: str, kind: str) -> Rule:
        """The rule for one probe: its `[probes.NAME]` keys, else its `[kinds.KIND]` keys,
        else `[defaults]`, key by key."""
        kind_rule, probe_rule = self.kinds.get(kind), self.probes.get(probe)
        if kind_rule is None and probe_rule is None:
            return self.defaults
        merged = self.defaults.model_dump()
        for override in (kind_rule, probe_rule):
            if override is not None:
                merged.update(override.model_dump(exclude_none=True))
        # Each key was validated where it was written; a merge cannot break a bound.
        return Rule.model_construct(**merged)
