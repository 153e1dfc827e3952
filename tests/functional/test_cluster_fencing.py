"""What sipwatch shows of fencing, with the real crm tools: `sipwatch cluster status` on a CIB
file (stonith-enabled read from it; no fencer to ask for the history, and it says so), and
the agent's status with the fencing history from `crm_mon` at the declared seam
(`bin_dir`: a stand-in printing the lab's real capture, tests/data/crm_mon_fence_history.xml)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sipwatch.cluster import HealthAttributeAgent, PacemakerTools, RailConfig, ToolPolicy
from testbed.pacemaker import FileCluster

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "crm_mon_fence_history.xml"
FAST = ToolPolicy(timeout_s=5.0, attempts=1, total_s=5.0)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileCluster:
    monkeypatch.setenv("CIB_file", str(tmp_path / "no-such-cib.xml"))  # never a live cluster
    return FileCluster.build(tmp_path / "cib.xml")


def _status(cluster: FileCluster, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipwatch", "cluster", "status", "--cib-file", str(cluster.path),
         "--node", "n1", "--freeze-file", str(cluster.path.parent / "freeze"), *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_cluster_status_says_whether_fencing_is_enabled(
    cluster: FileCluster, value: str, expected: bool
) -> None:
    cluster.set_property("stonith-enabled", value)
    done = _status(cluster, "--json")
    assert done.returncode == 0, done.stderr
    fencing = json.loads(done.stdout)["fencing"]
    assert fencing["enabled"] is expected
    assert fencing["events"] is None  # a CIB file has no fencer: unknown, not "none"
    text = _status(cluster).stdout
    if expected:
        assert "fencing enabled; history unread (no fencer to ask (a CIB file))" in text
    else:
        assert "fencing disabled (stonith-enabled=false)" in text


def test_agent_status_carries_the_fencing_history(
    cluster: FileCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history as the agent reads it through its tools (crm_mon at the seam),
    stonith-enabled from the CIB the status snapshot read."""
    cluster.set_property("stonith-enabled", "true")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "crm_mon"
    stand_in.write_text(f'#!/bin/sh\nexec cat "{CAPTURE}"\n')
    stand_in.chmod(0o755)
    with monkeypatch.context() as m:  # only the stand-in runs: no live cluster is asked
        m.delenv("CIB_file")
        tools = PacemakerTools(cib_file=None, bin_dir=bin_dir, policy=FAST)
        events = tools.fence_history()
    assert events is not None and {e.target for e in events} >= {"n1", "n3"}
    file_tools = PacemakerTools(cib_file=cluster.path, bin_dir=bin_dir, policy=FAST)
    assert file_tools.fence_history() is None  # never asks a fencer for a CIB file
    agent = HealthAttributeAgent(file_tools, node="n1", resource="g_pbx",
                                 rails=RailConfig(freeze_file=None))  # fmt: skip
    status = agent.status()
    assert status.ok and status.fencing is not None and status.fencing.enabled is True
