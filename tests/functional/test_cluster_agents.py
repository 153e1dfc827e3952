"""Cluster agents and their safety rails against real Pacemaker tools on a file CIB.

Every test works on its own copy of a 3-node CIB (n1, n2, n3; group g_pbx = IPaddr2 VIP +
Dummy PBX, settled on n1, resource-stickiness 100) built with Pacemaker's own tools
(testbed.pacemaker). Placement is read back from `crm_mon --output-as=xml` after
`crm_simulate -X` has carried out the transition: what Pacemaker would really do.
CIB_file is always set: nothing here can reach a live cluster.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sipwatch.cluster import (
    ActionOutcome,
    AuditLog,
    BanAgent,
    DryRunAgent,
    HealthAttributeAgent,
    PacemakerAgent,
    PacemakerTools,
    Rail,
    RailConfig,
    RailState,
    StandbyAgent,
    ToolPolicy,
    make_agent,
)
from sipwatch.model import Verdict
from testbed.pacemaker import FileCluster

#: CIB_file never names a live cluster (tests/functional/conftest.py: never_live).
pytestmark = pytest.mark.usefixtures("never_live")
HEALTH = "#health-sipwatch"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def freeze_file(tmp_path: Path) -> Path:
    return tmp_path / "freeze"


def make(
    cluster: FileCluster,
    cls: type[PacemakerAgent] = HealthAttributeAgent,
    *,
    node: str = "n1",
    freeze_file: Path | None = None,
    **kwargs: Any,
) -> Any:
    tools = PacemakerTools(
        cib_file=cluster.path, policy=ToolPolicy(timeout_s=5.0, attempts=2, total_s=10.0)
    )
    rails = kwargs.pop("rails", None) or RailConfig(freeze_file=freeze_file)
    return cls(tools, node=node, resource="g_pbx", rails=rails, **kwargs)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_template_layout(cluster: FileCluster) -> None:
    assert cluster.placement("g_pbx") == {"n1"}
    assert cluster.placement("p_vip") == {"n1"} and cluster.placement("p_pbx") == {"n1"}
    assert cluster.node_health() == {"n1": "green", "n2": "green", "n3": "green"}


# --- health attribute under each node-health-strategy --------------------------------------


@pytest.mark.parametrize(
    ("strategy", "verdict", "moves"),
    [
        ("migrate-on-red", Verdict.GREEN, False),
        ("migrate-on-red", Verdict.YELLOW, False),  # migrate-on-red ignores yellow
        ("migrate-on-red", Verdict.RED, True),
        ("only-green", Verdict.GREEN, False),
        ("only-green", Verdict.YELLOW, True),  # only-green also leaves yellow nodes
        ("only-green", Verdict.RED, True),
    ],
)
def test_health_attribute_under_strategy(
    cluster: FileCluster, strategy: str, verdict: Verdict, moves: bool
) -> None:
    cluster.set_property("node-health-strategy", strategy)
    clock = FakeClock()
    agent = make(cluster, clock=clock)
    record = agent.publish_health(verdict, reason="policy said so")

    assert record.result is ActionOutcome.DONE, record
    assert record.failover is moves
    assert record.summary == f"set node attribute {HEALTH}={verdict} on n1"
    assert cluster.node_attribute("n1", HEALTH) == str(verdict)
    cluster.settle()
    placement = cluster.placement("g_pbx")
    if moves:
        assert len(placement) == 1 and "n1" not in placement
    else:
        assert placement == {"n1"}
    assert agent.state.used(agent.rails, clock.now) == int(moves)


def test_same_value_is_unchanged_and_not_audited(cluster: FileCluster) -> None:
    agent = make(cluster)
    assert agent.publish_health(Verdict.YELLOW).result is ActionOutcome.DONE
    again = agent.publish_health(Verdict.YELLOW)
    assert again.result is ActionOutcome.UNCHANGED
    assert again.ok
    assert [r.result for r in agent.audit.records()] == [ActionOutcome.DONE]


def test_recovery_to_green_and_clear(cluster: FileCluster) -> None:
    agent = make(cluster)
    assert agent.publish_health(Verdict.RED).failover
    cluster.settle()
    green = agent.publish_health(Verdict.GREEN)
    assert green.result is ActionOutcome.DONE and not green.failover
    assert cluster.node_attribute("n1", HEALTH) == "green"
    cleared = agent.clear()
    assert cleared.result is ActionOutcome.DONE
    assert cleared.summary == f"delete node attribute {HEALTH} of n1"
    assert cluster.node_attribute("n1", HEALTH) is None
    assert agent.clear().result is ActionOutcome.UNCHANGED


def test_move_away_of_health_agent_publishes_red(cluster: FileCluster) -> None:
    record = make(cluster).move_away("sip down")
    assert (record.action, record.result, record.detail) == ("move_away", "done", "sip down")
    assert cluster.node_attribute("n1", HEALTH) == "red"


# --- ban -----------------------------------------------------------------------------------


def test_ban_always_has_a_lifetime(cluster: FileCluster) -> None:
    agent = make(cluster, BanAgent, lifetime_s=600)
    before = datetime.now(UTC)
    record = agent.move_away("sip down")
    after = datetime.now(UTC)

    assert record.result is ActionOutcome.DONE and record.failover
    assert record.summary == "ban g_pbx from n1 for 600 s"
    ban = cluster.constraints()["cli-ban-g_pbx-on-n1"]
    assert ban.get("rsc") == "g_pbx"
    expr = ban.find(".//expression")
    assert expr is not None and (expr.get("attribute"), expr.get("value")) == ("#uname", "n1")
    date = ban.find(".//date_expression")
    assert date is not None and date.get("operation") == "lt"
    end = datetime.fromisoformat(date.get("end", ""))
    # crm_resource's lifetime is wall-clock: now + 600 s (to the second).
    assert before + timedelta(seconds=599) <= end <= after + timedelta(seconds=601)
    cluster.settle()
    assert cluster.placement("g_pbx") in ({"n2"}, {"n3"})

    with pytest.raises(ValueError, match="lifetime"):
        make(cluster, BanAgent, lifetime_s=0)


def test_ban_in_place_is_unchanged_and_yellow_does_nothing(cluster: FileCluster) -> None:
    agent = make(cluster, BanAgent)
    assert agent.publish_health(Verdict.RED).result is ActionOutcome.DONE
    assert agent.publish_health(Verdict.RED).result is ActionOutcome.UNCHANGED
    assert agent.publish_health(Verdict.YELLOW).result is ActionOutcome.UNCHANGED
    assert list(cluster.constraints()) == ["cli-ban-g_pbx-on-n1"]


def test_green_clears_our_ban_and_expired_ones(cluster: FileCluster) -> None:
    agent = make(cluster, BanAgent)
    assert agent.move_away("down").result is ActionOutcome.DONE
    # An older ban of n2 that has expired (lifetimes are wall-clock), and an operator's live
    # ban of n3 that is none of our business.
    cluster.run(
        "crm_resource", "--ban", "--resource", "g_pbx", "--node", "n2", "--lifetime", "PT1H"
    )
    cluster.run(
        "cibadmin", "--modify", "--scope", "constraints", "--xml-text",
        '<date_expression id="cli-ban-g_pbx-on-n2-lifetime" end="2001-01-01 00:00:00Z"/>',
    )  # fmt: skip
    cluster.run(
        "crm_resource", "--ban", "--resource", "g_pbx", "--node", "n3", "--lifetime", "PT1H"
    )
    assert set(cluster.constraints()) == {f"cli-ban-g_pbx-on-{n}" for n in ("n1", "n2", "n3")}

    record = agent.publish_health(Verdict.GREEN)
    assert record.result is ActionOutcome.DONE
    assert record.summary == ("clear the ban of g_pbx from n1; clear expired constraints of g_pbx")
    assert set(cluster.constraints()) == {"cli-ban-g_pbx-on-n3"}
    assert agent.clear().result is ActionOutcome.UNCHANGED


# --- standby -------------------------------------------------------------------------------


def test_standby_is_transient_and_cleared(cluster: FileCluster) -> None:
    agent = make(cluster, StandbyAgent)
    record = agent.publish_health(Verdict.RED)
    assert record.result is ActionOutcome.DONE and record.failover
    assert record.summary == "set node attribute standby=on on n1"
    assert cluster.node_attribute("n1", "standby") == "on"  # status section: until reboot
    cluster.settle()
    nodes = {n.get("name"): n.get("standby") for n in cluster.mon().iterfind("./nodes/node")}
    assert nodes == {"n1": "true", "n2": "false", "n3": "false"}
    assert cluster.placement("g_pbx") in ({"n2"}, {"n3"})

    assert agent.publish_health(Verdict.GREEN).result is ActionOutcome.DONE
    assert cluster.node_attribute("n1", "standby") is None
    cluster.settle()
    nodes = {n.get("name"): n.get("standby") for n in cluster.mon().iterfind("./nodes/node")}
    assert nodes["n1"] == "false"


# --- rails ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [HealthAttributeAgent, BanAgent, StandbyAgent])
def test_last_node_refused(cluster: FileCluster, cls: type[PacemakerAgent]) -> None:
    cluster.nodes_down("n2", "n3")
    assert cluster.placement("g_pbx") == {"n1"}
    before = digest(cluster.path)
    agent = make(cluster, cls)

    record = agent.move_away("sip down")
    assert record.result is ActionOutcome.REFUSED
    assert record.rail is Rail.LAST_NODE
    assert "would stop" in record.detail
    assert digest(cluster.path) == before  # not even a query changed the file
    cluster.settle()
    assert cluster.placement("g_pbx") == {"n1"}
    assert agent.audit.records()[-1] == record


def test_last_node_counts_unhealthy_and_banned_nodes(cluster: FileCluster) -> None:
    # n2 is offline, n3 is red: publishing red on n1 would leave g_pbx nowhere.
    cluster.nodes_down("n2")
    cluster.set_node_attribute("n3", HEALTH, "red")
    refused = make(cluster).publish_health(Verdict.RED)
    assert (refused.result, refused.rail) == (ActionOutcome.REFUSED, Rail.LAST_NODE)
    # Yellow under migrate-on-red moves nothing: allowed.
    assert make(cluster).publish_health(Verdict.YELLOW).result is ActionOutcome.DONE
    # Under only-green the same yellow would stop the group: refused.
    cluster.set_node_attribute("n1", HEALTH, None)
    cluster.set_property("node-health-strategy", "only-green")
    refused = make(cluster).publish_health(Verdict.YELLOW)
    assert (refused.result, refused.rail) == (ActionOutcome.REFUSED, Rail.LAST_NODE)
    # n3 recovers: now n1 can go.
    cluster.set_node_attribute("n3", HEALTH, "green")
    assert make(cluster).publish_health(Verdict.YELLOW).result is ActionOutcome.DONE
    cluster.settle()
    assert cluster.placement("g_pbx") == {"n3"}


@pytest.mark.parametrize("cls", [HealthAttributeAgent, BanAgent, StandbyAgent])
def test_no_quorum_refuses_everything(cluster: FileCluster, cls: type[PacemakerAgent]) -> None:
    cluster.set_quorum(False)
    before = digest(cluster.path)
    agent = make(cluster, cls)
    for record in (
        agent.move_away("sip down"),
        agent.publish_health(Verdict.RED),
        agent.publish_health(Verdict.GREEN),
        agent.clear(),
    ):
        assert (record.result, record.rail) == (ActionOutcome.REFUSED, Rail.QUORUM), record
    assert digest(cluster.path) == before
    assert len(agent.audit) == 4


def test_standby_node_publishes_but_never_moves(cluster: FileCluster) -> None:
    """n2 does not run g_pbx: its red is published (so it is no takeover candidate), but it
    never bans or stands by the group, and it does not use the failover budget."""
    state, clock = RailState(), FakeClock()
    health = make(cluster, node="n2", state=state, clock=clock)
    record = health.publish_health(Verdict.RED)
    assert record.result is ActionOutcome.DONE and not record.failover
    assert cluster.node_attribute("n2", HEALTH) == "red"
    assert state.used(health.rails, clock.now) == 0

    for cls in (BanAgent, StandbyAgent):
        refused = make(cluster, cls, node="n2").move_away("sip down")
        assert (refused.result, refused.rail) == (ActionOutcome.REFUSED, Rail.NOT_ACTIVE)
        assert "runs on n1, not here" in refused.detail
    assert cluster.constraints() == {}
    assert cluster.node_attribute("n2", "standby") is None
    cluster.settle()
    assert cluster.placement("g_pbx") == {"n1"}


def test_only_own_health(cluster: FileCluster) -> None:
    agent = make(cluster)
    for record in (
        agent.publish_health(Verdict.RED, about="n2"),
        agent.move_away("n2 looks bad", about="n2"),
    ):
        assert (record.result, record.rail) == (ActionOutcome.REFUSED, Rail.OWN_NODE)
    assert cluster.node_attribute("n1", HEALTH) is None
    assert cluster.node_attribute("n2", HEALTH) is None
    assert agent.publish_health(Verdict.RED, about="n1").result is ActionOutcome.DONE


def test_cooldown_and_budget(template: FileCluster, tmp_path: Path) -> None:
    """Each failover needs the group on n1 again: a fresh copy of the cluster per step, one
    RailState (and clock) shared by the agents, as a daemon keeps it across calls."""
    clock = FakeClock(1000.0)
    state = RailState()
    rails = RailConfig(budget=2, budget_window_s=3600, cooldown_s=60, freeze_file=None)
    steps = iter(range(100))

    def publish(at: float, verdict: Verdict = Verdict.RED) -> Any:
        clock.now = at
        fresh = template.copy(tmp_path / f"cib-{next(steps)}.xml")
        agent = make(fresh, clock=clock, state=state, rails=rails)
        return agent.publish_health(verdict), fresh

    first, _ = publish(1000)
    assert first.result is ActionOutcome.DONE and first.failover
    cooled, fresh = publish(1030)
    assert (cooled.result, cooled.rail) == (ActionOutcome.REFUSED, Rail.COOLDOWN)
    assert cooled.failover and "cooldown" in cooled.detail
    assert fresh.node_attribute("n1", HEALTH) is None
    green, _ = publish(1031, Verdict.GREEN)  # recovery is never rate-limited
    assert green.result is ActionOutcome.DONE
    second, _ = publish(1061)
    assert second.result is ActionOutcome.DONE
    spent, fresh = publish(2000)
    assert (spent.result, spent.rail) == (ActionOutcome.REFUSED, Rail.BUDGET)
    assert "2 failover(s)" in spent.detail
    assert fresh.node_attribute("n1", HEALTH) is None
    # A red that moves nothing (n2 does not run g_pbx) is not a failover: not limited.
    clock.now = 2001
    other = make(fresh, node="n2", clock=clock, state=state, rails=rails)
    assert other.publish_health(Verdict.RED).result is ActionOutcome.DONE
    # An hour after the first failover one slot is free again.
    third, _ = publish(1000 + 3600)
    assert third.result is ActionOutcome.DONE
    assert state.used(rails, clock.now) == 2


def test_freeze_switches(cluster: FileCluster, freeze_file: Path, tmp_path: Path) -> None:
    # 1. The freeze file: checked before any tool runs (these tools would hang).
    freeze_file.touch()
    hang = tmp_path / "bin"
    hang.mkdir()
    for tool in ("cibadmin", "crm_simulate", "crm_attribute", "crm_resource"):
        script = hang / tool
        script.write_text("#!/bin/sh\nsleep 30\n")
        script.chmod(0o755)
    tools = PacemakerTools(cib_file=cluster.path, bin_dir=hang, policy=ToolPolicy(timeout_s=5))
    agent = BanAgent(tools, node="n1", resource="g_pbx", rails=RailConfig(freeze_file=freeze_file))
    for record in (agent.move_away("x"), agent.publish_health(Verdict.GREEN), agent.clear()):
        assert (record.result, record.rail) == (ActionOutcome.REFUSED, Rail.FREEZE)
        assert record.detail == f"freeze file {freeze_file} exists"
        assert record.duration_s < 1.0
    freeze_file.unlink()

    # 2. The node attribute sipwatch-freeze on this node (permanent or transient).
    cluster.set_node_attribute("n1", "sipwatch-freeze", "true", lifetime="forever")
    frozen = make(cluster, freeze_file=freeze_file).publish_health(Verdict.RED)
    assert (frozen.rail, frozen.detail) == (
        Rail.FREEZE,
        "node attribute sipwatch-freeze is true on n1",
    )
    cluster.set_node_attribute("n1", "sipwatch-freeze", None, lifetime="forever")
    # ... on another node it does not freeze this one.
    cluster.set_node_attribute("n2", "sipwatch-freeze", "true")
    assert make(cluster, StandbyAgent).clear().result is ActionOutcome.UNCHANGED

    # 3. Cluster maintenance-mode.
    cluster.set_property("maintenance-mode", "true")
    frozen = make(cluster).publish_health(Verdict.RED)
    assert (frozen.rail, frozen.detail) == (Rail.FREEZE, "the cluster is in maintenance-mode")
    assert cluster.node_attribute("n1", HEALTH) is None


def test_dry_run_changes_nothing(cluster: FileCluster) -> None:
    clock = FakeClock()
    inner = make(cluster, BanAgent, clock=clock)
    dry = DryRunAgent(inner)
    before = digest(cluster.path)

    would = dry.move_away("sip down")
    assert would.result is ActionOutcome.WOULD and would.ok
    assert (would.dry_run, would.failover) == (True, True)
    assert would.summary == "ban g_pbx from n1 for 1800 s"
    assert dry.publish_health(Verdict.RED).result is ActionOutcome.WOULD
    assert digest(cluster.path) == before
    assert inner.state.used(inner.rails, clock.now) == 0  # budget not consumed

    cluster.nodes_down("n2", "n3")  # rails still apply, and are reported
    refused = dry.move_away("sip down")
    assert (refused.result, refused.rail, refused.dry_run) == (
        ActionOutcome.REFUSED,
        Rail.LAST_NODE,
        True,
    )
    assert [r.dry_run for r in dry.audit.records()] == [True, True, True]
    assert isinstance(
        make_agent("ban", inner.tools, node="n1", resource="g_pbx", dry_run=True), DryRunAgent
    )


def test_status(cluster: FileCluster) -> None:
    cluster.set_node_attribute("n3", HEALTH, "yellow")
    agent = make(cluster, BanAgent)
    agent.move_away("down")
    status = agent.status()
    assert status.ok and status.mode == "file"
    assert status.have_quorum is True
    assert status.running_on == ("n1",) and status.active_here  # not settled yet
    assert status.banned is True and status.standby is False and status.frozen is None
    assert {n.name: n.health for n in status.nodes} == {
        "n1": "green",
        "n2": "green",
        "n3": "yellow",
    }
    assert status.failovers_used == 1
    assert json.loads(json.dumps(status.to_dict()))["running_on"] == ["n1"]


def test_audit_log_is_bounded_and_written_as_json_lines(
    cluster: FileCluster, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    agent = make(cluster, audit=AuditLog(maxlen=2, path=path))
    agent.publish_health(Verdict.RED, about="n3")  # refused
    agent.publish_health(Verdict.YELLOW, reason="rtt high")  # done
    agent.publish_health(Verdict.YELLOW)  # unchanged: not audited
    agent.publish_health(Verdict.GREEN)  # done
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["result"], d["rail"]) for d in lines] == [
        ("refused", "own_node"),
        ("done", None),
        ("done", None),
    ]
    assert lines[1]["detail"] == "rtt high"
    assert set(lines[0]) == {
        "at", "action", "agent", "node", "resource", "result", "summary", "rail", "detail",
        "dry_run", "failover", "duration_s",
    }  # fmt: skip
    assert all("--" not in d["summary"] and "crm_" not in d["summary"] for d in lines)
    assert [r.summary for r in agent.audit.records()] == [
        f"set node attribute {HEALTH}=yellow on n1",
        f"set node attribute {HEALTH}=green on n1",
    ]  # bounded to the last 2


# --- the [cluster] config section --------------------------------------------------------------


def test_agent_from_settings(cluster: FileCluster, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from sipwatch.cluster import ClusterSettings, agent_from_settings
    from sipwatch.errors import ConfigError

    assert agent_from_settings(ClusterSettings()) is None  # agent = "none" by default
    common: dict[str, Any] = {"cib_file": cluster.path, "freeze_file": None}
    dry = agent_from_settings(ClusterSettings(agent="ban", node="n1", **common))
    assert isinstance(dry, DryRunAgent)  # dry_run is the default
    assert dry.move_away("x").result is ActionOutcome.WOULD
    audit = tmp_path / "audit.jsonl"
    ban = agent_from_settings(
        ClusterSettings(
            agent="ban",
            node="n1",
            dry_run=False,
            act_on=("yellow", "red"),
            ban_lifetime_s=120,
            audit_log=audit,
            **common,
        )
    )
    assert isinstance(ban, BanAgent) and ban.lifetime_s == 120
    record = ban.publish_health(Verdict.YELLOW)
    assert (record.result, record.summary) == (ActionOutcome.DONE, "ban g_pbx from n1 for 120 s")
    assert json.loads(audit.read_text())["result"] == "done"

    fast = {"tool_timeout_s": 1.0, "tool_total_s": 1.0}
    with pytest.raises(ConfigError, match=r"cluster\.node is not set"):
        agent_from_settings(ClusterSettings(agent="standby", **common, **fast))  # crm_node -n
    for bad in ({"ban_lifetime_s": 10}, {"tool_timeout_s": 20, "tool_total_s": 10}):
        with pytest.raises(ValidationError):
            ClusterSettings(**bad)
