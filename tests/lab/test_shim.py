"""The fault suite's core faults with the OCF shim as the path to Pacemaker: g_pbx is
p_vip + p_pbx + p_sw, where p_sw is ocf:sipwatch:sipwatch in mode=service, monitored every
second at OCF_CHECK_LEVEL=10 (`sipwatch check`, answered by the node's `sipwatch run`, whose
cluster agent is "none"). A failed monitor with migration-threshold=1 moves the group; the
action log is Pacemaker's failure record, with the shim's exit reason.
"""

from __future__ import annotations

import time

import pytest

from testbed.lab import NODES, Lab

pytestmark = pytest.mark.lab

LAB_MODE = "shim"
LIMIT_S = {"crash": 3.0, "hang": 4.0, "503": 6.0, "drop": 8.0}
# What each fault leaves in Pacemaker's failure record on the old node.
WHY = {
    "crash": ("p_pbx_monitor", "is gone"),  # the PBX agent's own 1 s monitor is first
    "hang": ("p_sw_monitor", "frozen"),
    "503": ("p_sw_monitor", "503"),
    "drop": ("p_sw_monitor", "no final response"),
}


def _failures(lab: Lab, node: str) -> list[tuple[str, str]]:
    return [
        (f.get("op_key", ""), f.get("exitreason", ""))
        for f in lab.crm_mon().iter("failure")
        if f.get("node") == node
    ]


@pytest.mark.parametrize("fault", ["crash", "hang", "503", "drop"])
def test_active_fault_fails_over_through_the_shim(lab: Lab, steady: str, fault: str) -> None:
    f = lab.measure_failover(fault)
    assert f.old == steady and f.new != f.old and f.new in NODES, f
    assert f.settled_on == f.new
    assert f.max_holders <= 1, f"VIP on two nodes at once: {f.holders}"
    assert f.holders[-1] == (f.new,), f.holders
    assert f.seconds < LIMIT_S[fault], f"{fault}: {f.seconds:.2f} s to be served again"
    failures = _failures(lab, f.old)
    op, why = WHY[fault]
    if fault == "crash":  # either monitor may see it first
        assert any("is gone" in r or "not running" in r for _, r in failures), failures
    else:
        assert any(k.startswith(op) and why in r for k, r in failures), failures
    time.sleep(3)  # no ping-pong once the old node is healed
    assert lab.vip_holders() == [f.new]
    assert lab.client_options() == f.new


def test_partition_of_active_with_the_guard_and_no_agent(lab: Lab, steady: str) -> None:
    """The quorum guard runs in `sipwatch run` even with cluster agent "none"."""
    f = lab.measure_failover("partition")
    assert f.new != f.old and f.settled_on == f.new, f
    assert f.max_holders <= 1, f"VIP on two nodes at once: {f.holders}"
    released = [r for r in lab.audit(f.old) if r["action"] == "release_vip"]
    assert released and released[-1]["result"] == "done", lab.audit(f.old)[-3:]
    time.sleep(3)
    assert lab.vip_holders() == [f.new]


def test_sipwatch_killed_check_probes_itself_and_moves_nothing(lab: Lab, steady: str) -> None:
    """Without the daemon, `sipwatch check` runs the probes itself: slower, still green."""
    lab.inject("sipwatch_killed", steady)
    try:
        with lab.watch_vip() as watch:
            deadline = time.monotonic() + 6
            answered = 0
            while time.monotonic() < deadline:
                answered += lab.client_options() == steady
                time.sleep(0.5)
        assert watch.sequence() == [(steady,)], watch.sequence()
        assert answered >= 6
        assert _failures(lab, steady) == []
    finally:
        lab.heal("sipwatch_killed", steady)
