"""`make demo` end to end, as a new user runs it: the single-PBX part, then the mission in the
three-node lab — the hung PBX's VIP moves, with the time it took — and nothing of either is
left afterwards; also when interrupted (SIGINT, as Ctrl-C) in the middle of the lab part."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.lab import PREFIX, STATE_FILE, _is_lab_init
from testbed.netns import require_root

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "testbed.demo"]


@pytest.fixture(autouse=True)
def no_lab_up() -> None:
    why = require_root()
    if why:
        pytest.skip(f"LAB DEMO TEST SKIPPED: {why}")
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        if any(pid and _is_lab_init(pid) for pid in state.get("inits", {}).values()):
            pytest.fail(f"a lab is already up ({STATE_FILE}): the demo needs the namespaces")


def leftovers() -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    left = [ln.split()[0] for ln in names.stdout.splitlines() if ln.startswith(PREFIX)]
    if STATE_FILE.exists():
        left.append(str(STATE_FILE))
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=10)
    left += [a for a in procs.stdout.splitlines() if "sipwatch-demo-" in a or "sipwatch-lab/" in a]
    return left


def test_the_demo_shows_a_real_failover_and_cleans_up() -> None:
    done = subprocess.run(DEMO, capture_output=True, text=True, timeout=240, cwd=ROOT)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-2000:]
    assert "== single-PBX part finished" in out
    assert re.search(r"g_pbx \(VIP \+ Kamailio\) started on n1", out), out[-2000:]
    assert re.search(r"== fault: the PBX on n1 hangs", out)
    assert re.search(r"sipwatch on n1: red, .*frozen", out)
    moved = re.search(r"the phones are answered by (n[23]) ([0-9.]+) s after the hang", out)
    assert moved, out[-2000:]
    assert float(moved.group(2)) < 10.0
    assert f"held by {moved.group(1)} (VIP on two nodes at once: never)" in out
    assert "took nothing back" in out and "stock ocf:heartbeat:kamailio" in out
    assert re.search(r"audit \(n1\): .* publish_health done failover=True", out)
    assert "== demo finished" in out
    assert leftovers() == []


def test_an_interrupted_demo_leaves_nothing() -> None:
    proc = subprocess.Popen(
        DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 180
    try:
        for line in proc.stdout:
            seen.append(line)
            if "started on n1" in line or time.monotonic() > deadline:
                break
        assert any("started on n1" in ln for ln in seen), "".join(seen[-30:])
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C in the middle of the lab part
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, "".join(seen[-10:]) + rest[-2000:]
    assert "interrupted: the lab was removed" in rest
    assert leftovers() == []
