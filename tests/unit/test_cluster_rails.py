"""Pure parts of sipwatch.cluster: budget and cooldown bookkeeping, the XML views, summaries."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sipwatch.cluster.pacemaker import (
    CallResult,
    CibSnapshot,
    ClusterView,
    iso_duration,
)
from sipwatch.cluster.rails import Rail, RailConfig, RailState, is_true


def test_cooldown_then_budget_table() -> None:
    config = RailConfig(budget=2, budget_window_s=100, cooldown_s=10, freeze_file=None)
    state = RailState()
    assert state.refusal(config, 0) is None
    state.record(0)
    table = [
        (5, Rail.COOLDOWN),  # 5 s after the first failover
        (10, None),  # cooldown over
    ]
    for now, rail in table:
        refusal = state.refusal(config, now)
        assert (refusal[0] if refusal else None) is rail, now
    state.record(10)
    assert state.refusal(config, 15) == (
        Rail.COOLDOWN,
        "last failover 5 s ago, 5 s of cooldown left",
    )
    assert state.refusal(config, 50) == (
        Rail.BUDGET,
        "2 failover(s) in the last 100 s, budget 2",
    )
    assert state.used(config, 99) == 2
    assert state.refusal(config, 100) is None  # the first one left the window
    assert state.used(config, 100) == 1


def test_zero_budget_refuses_every_failover() -> None:
    config = RailConfig(budget=0, cooldown_s=0, freeze_file=None)
    refusal = RailState().refusal(config, 0)
    assert refusal is not None and refusal[0] is Rail.BUDGET


@pytest.mark.parametrize(
    "kwargs",
    [{"budget": -1}, {"budget_window_s": 0}, {"cooldown_s": -1}, {"freeze_attribute": ""}],
)
def test_rail_config_rejects(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RailConfig(**kwargs)  # type: ignore[arg-type]


def test_freeze_file(tmp_path: Path) -> None:
    config = RailConfig(freeze_file=tmp_path / "freeze")
    assert config.file_frozen() is None
    (tmp_path / "freeze").touch()
    assert config.file_frozen() == f"freeze file {tmp_path / 'freeze'} exists"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("on", True), ("1", True), ("YES", True), ("false", False), (None, False)],
)
def test_is_true(value: str | None, expected: bool) -> None:
    assert is_true(value) is expected


CIB = """<cib have-quorum="1"><configuration>
<crm_config><cluster_property_set id="o">
  <nvpair id="o1" name="maintenance-mode" value="false"/></cluster_property_set></crm_config>
<nodes><node id="1" uname="n1"><instance_attributes id="n1a">
  <nvpair id="n1a1" name="sipwatch-freeze" value="true"/></instance_attributes></node>
  <node id="2" uname="n2"/></nodes>
<constraints>
  <rsc_location id="cli-ban-g-on-n1" rsc="g" role="Started"><rule id="r" score="-INFINITY">
    <expression id="e" attribute="#uname" operation="eq" value="n1"/>
    <date_expression id="d" operation="lt" end="2030-01-02 03:04:05Z"/></rule></rsc_location>
  <rsc_location id="cli-ban-g-on-n2" rsc="g" role="Started"><rule id="r2" score="-INFINITY">
    <expression id="e2" attribute="#uname" operation="eq" value="n2"/></rule></rsc_location>
  <rsc_location id="operator" rsc="g" node="n2" score="100"/>
</constraints></configuration>
<status><node_state id="2" uname="n2"><transient_attributes id="2"><instance_attributes id="s2">
  <nvpair id="s2h" name="#health-sipwatch" value="red"/></instance_attributes>
  </transient_attributes></node_state></status></cib>"""


def test_cib_snapshot_views() -> None:
    snap = CibSnapshot(Path("/dev/null"), ET.fromstring(CIB))
    assert snap.have_quorum
    assert snap.cluster_property("maintenance-mode") == "false"
    assert snap.node_attribute("n1", "sipwatch-freeze") == "true"
    assert snap.transient_attribute("n2", "#health-sipwatch") == "red"
    assert snap.transient_attribute("n1", "#health-sipwatch") is None
    assert snap.has_node("n2") and not snap.has_node("n9")
    bans = snap.bans("g")
    assert set(bans) == {"n1", "n2"}  # "operator" is not a sipwatch/crm_resource ban
    assert bans["n1"].end == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert bans["n1"].active(datetime(2030, 1, 1, tzinfo=UTC))
    assert not bans["n1"].active(datetime(2031, 1, 1, tzinfo=UTC))
    assert bans["n2"].end is None and bans["n2"].active(datetime(2999, 1, 1, tzinfo=UTC))


STATUS = """<cluster_status><nodes>
  <node name="n1" online="true" standby="false" maintenance="false" health="red"/>
  <node name="n2" online="false" standby="true" maintenance="false" health="green"/></nodes>
<resources>
  <group id="g" number_resources="2">
    <resource id="vip" role="Started" active="true"><node name="n1"/></resource>
    <resource id="pbx" role="Stopped" active="false"/></group>
  <clone id="c"><resource id="h" role="Started" active="true"><node name="n1"/></resource>
    <resource id="h" role="Started" active="true"><node name="n2"/></resource></clone>
</resources></cluster_status>"""


def test_cluster_view_placement() -> None:
    view = ClusterView.from_xml(ET.fromstring(STATUS))
    assert [(n.name, n.online, n.standby, n.health) for n in view.nodes] == [
        ("n1", True, False, "red"),
        ("n2", False, True, "green"),
    ]
    group = view.resource("g")
    assert group is not None and not group.running  # a group runs only if every member does
    vip = view.resource("vip")
    assert vip is not None and vip.running_on == {"n1"}
    clone = view.resource("c")
    assert clone is not None and clone.running_on == {"n1", "n2"}
    assert view.resource("nope") is None


def test_call_summary_is_one_argv_free_line() -> None:
    failed = CallResult("crm_resource", 1, stderr="\nError: no such resource\nmore\n")
    assert failed.summary() == "crm_resource: exit 1: Error: no such resource"
    hung = CallResult("cibadmin", None, duration_s=0.51, timed_out=True, attempts=3)
    assert hung.summary() == "cibadmin: timed out after 0.5 s, killed (3 attempts)"
    assert hung.transient and not hung.ok
    long = CallResult("crm_simulate", 70, stderr="x" * 500).summary()
    assert len(long) == 160 and long.endswith("...")
    assert CallResult("crm_node", 102).transient  # not connected: try again


def test_iso_duration() -> None:
    assert iso_duration(1800) == "PT1800S"
    assert iso_duration(0.2) == "PT1S"
