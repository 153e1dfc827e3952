"""From this node's verdict to Pacemaker moving the VIP + PBX group, without causing an outage.

Owns: the ClusterAgent interface and its implementations (agents.py), the safety rails
(rails.py), the audit trail (audit.py). `pacemaker.py` is the only code in sipwatch that knows
a Pacemaker command line. Must not know: probes or policy — an agent is handed a Verdict.

    agent = make_agent("health_attribute", PacemakerTools(), node="pbx1", resource="g_pbx")
    record = agent.publish_health(Verdict.RED, reason="sip udp timeout x3")
    record.result   # done / unchanged / would / refused (record.rail says which) / failed

Every call returns an AuditRecord, never raises, runs each tool with a timeout and bounded
retries, and checks the rails first: own_node, freeze, quorum, not_active, last_node (by
crm_simulate on a private copy of the CIB), cooldown, budget. See rails.py for each one.
"""

from sipwatch.cluster.agents import (
    AGENTS,
    HEALTH_ATTRIBUTE,
    BanAgent,
    ClusterAgent,
    ClusterStatus,
    DryRunAgent,
    HealthAttributeAgent,
    PacemakerAgent,
    StandbyAgent,
    make_agent,
)
from sipwatch.cluster.audit import ActionOutcome, AuditLog, AuditRecord
from sipwatch.cluster.pacemaker import Mode, PacemakerTools, ToolPolicy
from sipwatch.cluster.rails import DEFAULT_FREEZE_FILE, Rail, RailConfig, RailState
from sipwatch.cluster.settings import ClusterSettings, agent_from_settings

__all__ = [
    "AGENTS",
    "DEFAULT_FREEZE_FILE",
    "HEALTH_ATTRIBUTE",
    "ActionOutcome",
    "AuditLog",
    "AuditRecord",
    "BanAgent",
    "ClusterAgent",
    "ClusterSettings",
    "ClusterStatus",
    "DryRunAgent",
    "HealthAttributeAgent",
    "Mode",
    "PacemakerAgent",
    "PacemakerTools",
    "Rail",
    "RailConfig",
    "RailState",
    "StandbyAgent",
    "ToolPolicy",
    "agent_from_settings",
    "make_agent",
]
