"""sipwatch.cluster.fencing on a real capture: `crm_mon -1 --fence-history=3 --output-as=xml`
from the lab in mode fencing (tests/data/crm_mon_fence_history.xml: a reboot of n3 that succeeded,
an "off" of n1 that failed while the power controller was unreachable), and the watch's
audit records: each fence once, a failed one saying why nothing is recovered."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwatch.cluster.audit import ActionOutcome, AuditLog
from sipwatch.cluster.fencing import (
    FenceEvent,
    FencingState,
    FencingWatch,
    parse_fence_history,
    read_state,
)
from sipwatch.errors import ClusterError

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "crm_mon_fence_history.xml"


def _events() -> tuple[FenceEvent, ...]:
    return parse_fence_history(CAPTURE.read_text())


def test_the_captured_history_parses() -> None:
    events = _events()
    by_target = {e.target: e for e in events}
    assert by_target["n3"].action == "reboot" and by_target["n3"].status == "success"
    assert by_target["n3"].delegate in ("n1", "n2", "n3")
    assert by_target["n3"].completed.endswith("Z")
    assert by_target["n1"].action == "off" and by_target["n1"].status == "failed"


def test_state_summary_and_unresolved() -> None:
    state = FencingState(True, _events())
    assert [e.target for e in state.unresolved()] == ["n1"]
    d = state.to_dict()
    assert d["enabled"] is True and [e["target"] for e in d["failed"]] == ["n1"]
    text = state.summary()
    assert text.startswith("fencing enabled; last: ")
    assert "off of n1" in text and "failed" in text and "reboot of n3" in text
    assert FencingState(False, ()).summary() == "fencing disabled (stonith-enabled=false)"
    unread = FencingState(True, None, "no fencer to ask (a CIB file)").summary()
    assert unread == "fencing enabled; history unread (no fencer to ask (a CIB file))"


@pytest.mark.parametrize(
    "text",
    ["", "<pacemaker-result", "<cib/>", '<pacemaker-result><fence_event target="n1"/>'
     "</pacemaker-result>"],
)  # fmt: skip
def test_garbage_is_a_cluster_error(text: str) -> None:
    with pytest.raises(ClusterError):
        parse_fence_history(text)


def test_read_state_unset_property_means_enabled_and_errors_are_kept() -> None:
    assert read_state(lambda _: None, _events).enabled is True  # Pacemaker's default
    assert read_state(lambda _: "false", lambda: ()).enabled is False

    def broken() -> tuple[FenceEvent, ...]:
        raise ClusterError("stonith_admin timed out after 10 s")

    state = read_state(lambda _: "true", broken)
    assert state.events is None and "timed out" in state.error


def test_watch_audits_each_fence_once_and_old_successes_not_at_all() -> None:
    audit = AuditLog()
    watch = FencingWatch(read=lambda: FencingState(True, ()), audit=audit, node="n2",
                         resource="g_pbx")  # fmt: skip
    events = _events()
    success = next(e for e in events if e.status == "success")
    failed = next(e for e in events if e.status == "failed")
    # At start the history already holds the successful reboot: not news. The failed fence
    # of n1 is unresolved: it is audited (it explains a stopped group right now).
    records = watch.observe(FencingState(True, (failed, success)))
    assert [r.result for r in records] == [ActionOutcome.FAILED]
    assert records[0].summary.startswith("off of n1")
    assert "n1 is not fenced (failed)" in records[0].detail
    assert "g_pbx stays where it is" in records[0].detail
    assert watch.observe(FencingState(True, (failed, success))) == []  # once
    done = FenceEvent("n1", "reboot", "success", "n3", "n2", "2026-12-02 17:30:00Z")
    records = watch.observe(FencingState(True, (done, failed, success)))
    assert [r.result for r in records] == [ActionOutcome.DONE]
    assert watch.status() is not None and watch.status()["failed"] == []  # type: ignore[index]
    assert [r.action for r in audit.records()] == ["fencing", "fencing"]
