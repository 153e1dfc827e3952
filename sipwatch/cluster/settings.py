"""The `[cluster]` section of the config file, and building an agent from it.

Owns: ClusterSettings (validated at load time; errors name the key) and agent_from_settings.
Must not know: command lines (pacemaker.py).

    [cluster]
    agent = "health_attribute"   # none | health_attribute | ban | standby
    dry_run = false              # default true: report what would be done, change nothing
    resource = "g_pbx"           # the VIP + PBX group
    node = "pbx1"                # default: `crm_node -n` when the agent is built
    act_on = ["red"]             # ban/standby: the verdicts that move the group off this node
    ban_lifetime_s = 1800.0
    budget = 3                   # failovers per budget_window_s
    budget_window_s = 3600.0
    cooldown_s = 300.0
    freeze_file = "/etc/sipwatch/freeze"
    audit_log = "/var/log/sipwatch/audit.jsonl"
    release_vip_without_quorum = false  # the quorum guard (cluster/quorum.py); needs a vip
                                 # probe and no-quorum-policy=stop
    quorum_tool = "corosync-quorumtool"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sipwatch.cluster.rails import DEFAULT_FREEZE_FILE

if TYPE_CHECKING:
    from sipwatch.cluster.agents import ClusterAgent
    from sipwatch.cluster.pacemaker import PacemakerTools

__all__ = ["ClusterSettings", "agent_from_settings"]


class ClusterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: Literal["none", "health_attribute", "ban", "standby"] = "none"
    dry_run: bool = True
    resource: str = Field("g_pbx", min_length=1)
    node: str | None = Field(None, min_length=1)
    cib_file: Path | None = None  # work on a CIB file instead of the live cluster (tests, demos)
    attribute: str = Field("#health-sipwatch", pattern=r"^#health-[A-Za-z0-9_.-]+$")
    act_on: tuple[Literal["yellow", "red"], ...] = Field(("red",), min_length=1)
    ban_lifetime_s: float = Field(1800.0, ge=60, le=7 * 86400)
    budget: int = Field(3, ge=0, le=100)
    budget_window_s: float = Field(3600.0, gt=0)
    cooldown_s: float = Field(300.0, ge=0)
    freeze_file: Path | None = DEFAULT_FREEZE_FILE
    freeze_attribute: str = Field("sipwatch-freeze", min_length=1)
    tool_timeout_s: float = Field(10.0, gt=0, le=300)
    tool_attempts: int = Field(3, ge=1, le=10)
    tool_total_s: float = Field(30.0, gt=0, le=900)
    audit_log: Path | None = None
    audit_size: int = Field(500, ge=1, le=100_000)
    release_vip_without_quorum: bool = False
    quorum_tool: str = Field("corosync-quorumtool", min_length=1)
    # How often the fencing watch (cluster/fencing.py) reads stonith-enabled and the fencing
    # history, for /status and the audit log; 0: never. It runs only where sipwatch works
    # with the cluster (an agent other than "none", or the quorum guard on).
    fencing_watch_s: float = Field(5.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _total_covers_one_attempt(self) -> ClusterSettings:
        if self.tool_total_s < self.tool_timeout_s:
            raise ValueError("tool_total_s must be >= tool_timeout_s")
        return self


def agent_from_settings(
    settings: ClusterSettings, *, tools: PacemakerTools | None = None
) -> ClusterAgent | None:
    """The ClusterAgent the settings describe (DryRunAgent-wrapped when dry_run), or None for
    agent = "none". Raises ConfigError when this node's name is neither configured nor known
    to the cluster (`crm_node -n`)."""
    from sipwatch.cluster.agents import make_agent
    from sipwatch.cluster.audit import AuditLog
    from sipwatch.cluster.pacemaker import PacemakerTools, ToolPolicy
    from sipwatch.cluster.rails import RailConfig
    from sipwatch.errors import ClusterError, ConfigError
    from sipwatch.model import Verdict

    if settings.agent == "none":
        return None
    if tools is None:
        policy = ToolPolicy(
            timeout_s=settings.tool_timeout_s,
            attempts=settings.tool_attempts,
            total_s=settings.tool_total_s,
        )
        tools = PacemakerTools(cib_file=settings.cib_file, policy=policy)
    node = settings.node
    if node is None:
        try:
            node = tools.local_node()
        except ClusterError as exc:
            raise ConfigError(
                f"cluster.node is not set and this node's cluster name is unknown ({exc})"
            ) from None
    rails = RailConfig(
        budget=settings.budget,
        budget_window_s=settings.budget_window_s,
        cooldown_s=settings.cooldown_s,
        freeze_file=settings.freeze_file,
        freeze_attribute=settings.freeze_attribute,
    )
    extra: dict[str, Any] = {}
    if settings.agent in ("ban", "standby"):
        extra["act_on"] = frozenset(Verdict(v) for v in settings.act_on)
    if settings.agent == "ban":
        extra["lifetime_s"] = settings.ban_lifetime_s
    return make_agent(
        settings.agent,
        tools,
        node=node,
        resource=settings.resource,
        dry_run=settings.dry_run,
        rails=rails,
        audit=AuditLog(maxlen=settings.audit_size, path=settings.audit_log),
        attribute=settings.attribute,
        **extra,
    )
