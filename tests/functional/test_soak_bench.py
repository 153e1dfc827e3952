"""bench/soak.py's machinery, in ~20 s against a real Kamailio and a real `sipwatch run`: the
resource sampler reads the daemon, the verdict checker sees a real injected fault (OPTIONS and
REGISTER dropped) turn the node red on /status, /readyz and the agent-check line, and it
reports a mismatch when the same samples are judged against a schedule that claims no fault
- so an hour-long soak cannot pass by reading nothing."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.peers
BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_soak() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # its `_repo_root`
    spec = importlib.util.spec_from_file_location("bench_soak", BENCH / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_short_soak_sees_the_injected_fault(tmp_path: Path) -> None:
    soak = load_soak()
    settle_s = 3.5
    run = soak.run_soak(
        tmp_path / "soak",
        total_s=19.0,
        phase_s=7.0,
        settle_s=settle_s,
        reload_s=6.0,  # one SIGHUP, at 13 s (in the clean phase after the fault)
        lead_s=5.0,
        faults=("drop",),
        sample_s=2.0,
        warmup_s=0.0,
    )
    r = run.report
    res = r["resources"]
    assert res["samples"] >= 5
    for key, floor in (("rss_mb", 5.0), ("fds", 3.0), ("tasks", 10.0), ("threads", 1.0)):
        assert res[key]["min"] is not None and res[key]["min"] >= floor, (key, res[key])
    assert res["cpu_percent_whole_run"] is not None and res["cpu_percent_whole_run"] > 0

    verdicts = r["verdicts"]
    assert [p["fault"] for p in verdicts["phases"]] == ["clean", "drop", "clean"]
    drop = verdicts["phases"][1]
    assert drop["result"] == "ok", verdicts["mismatches"]
    for channel in ("status", "readyz", "agent"):
        assert drop[channel]["judged"] >= 2, (channel, drop)
    assert drop["reached_after_s"] is not None and drop["reached_after_s"] < settle_s
    assert r["reloads"]["sent"] == 1 and r["reloads"]["taken"] == 1
    assert r["log"]["lines"] > 0 and r["log"]["verdict_changes"] >= 2
    assert r["result"] == "PASS", r["problems"]

    # The checker can fail: the same samples against a schedule without the fault.
    claimed = [dataclasses.replace(p, fault="clean") for p in run.phases]
    wrong = soak.judge(claimed, run.record, settle_s)
    assert wrong["phases"][1]["result"] == "mismatch"
    seen = {(m["channel"], m["seen"]) for m in wrong["mismatches"] if m["phase"] == 1}
    assert {("status", "red"), ("readyz", "503"), ("agent", "down")} <= seen

    # A channel that stopped answering is a mismatch too, not a phase with less to judge.
    silent = soak.judge(run.phases, dataclasses.replace(run.record, agent=[]), settle_s)
    long_enough = [
        p
        for p in silent["phases"]
        if p["ended_s"] - p["applied_s"] - settle_s >= soak.NO_SAMPLE_WINDOW_S
    ]
    assert long_enough and all(p["result"] == "mismatch" for p in long_enough), long_enough
    assert {m["seen"] for m in silent["mismatches"]} == {"no sample"}

    # And the log scan counts what it is there to count.
    bad = "2026-12-02 17:00:00,000 ERROR sipwatch.daemon event=side_task_failed task=x\n"
    scanned = soak.scan_log("Traceback (most recent call last):\n" + bad)
    assert (scanned["tracebacks"], scanned["error_lines"], scanned["error_events"]) == (1, 1, 1)
