"""keepalived and sipwatch: `daemon.track_file`, and the `vrrp_script` fast path
(deploy/keepalived/sipwatch-vrrp-check), against a real VRRP pair in two network namespaces
(tests/functional/vrrp_pair.py; root). The PBX on the MASTER goes red (a real Kamailio
fault) and the VIP moves to the BACKUP; it comes back when the PBX does. The script itself
is also tested on crafted verdict files (no root needed)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon import running, wait_for
from vrrp_pair import VRRP_CHECK, vrrp_pair, why_not

from testbed import free_port

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")

POLICY = """
startup_grace_s = 0.0
[defaults]
fall = 2
rise = 2
[kinds.sip_options]
role = "critical"
"""


@pytest.fixture
def root() -> None:
    reason = why_not()
    if reason:
        pytest.skip(f"SKIPPED LOUDLY: keepalived pair not possible here: {reason}")


@contextlib.contextmanager
def sipwatch_run(workdir: Path, uri: str, daemon_keys: str) -> Iterator[subprocess.Popen[bytes]]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "policy.toml").write_text(POLICY)
    cfg = workdir / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {free_port("tcp")}\n{daemon_keys}'
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\nuri = "{uri}"\n'
        "interval_s = 0.3\ntimeout_s = 0.25\n"
    )
    with running(cfg, workdir / "daemon.log") as proc:
        yield proc


def test_track_file_moves_the_vip_when_the_pbx_goes_red(root, kam, tmp_path):
    with vrrp_pair(tmp_path / "pair", check="track_file") as pair:
        pair.wait_holder("A", timeout_s=15)
        track = pair.track_file("A")
        keys = f'verdict_file = ""\ntrack_file = "{track}"\n'
        with sipwatch_run(tmp_path / "sw", kam.uri("udp", user="ping"), keys):
            wait_for(lambda: track.read_text() == "0\n" and track.stat().st_mtime > time.time() - 6)
            kam.set_fault("OPTIONS", drop=True)
            wait_for(lambda: track.read_text() == "1\n")
            pair.wait_holder("B", timeout_s=10)
            kam.clear_faults()
            wait_for(lambda: track.read_text() == "0\n")
            pair.wait_holder("A", timeout_s=10)  # higher priority, preempts back


def test_vrrp_script_moves_the_vip_when_the_pbx_goes_red_or_sipwatch_dies(
    root, kam, kamailio_noqop, tmp_path
):
    """Node A's sipwatch probes `kam`, node B's the other Kamailio: a fault on A's PBX."""
    with vrrp_pair(tmp_path / "pair", check="vrrp_script") as pair:
        a_keys = f'verdict_file = "{pair.verdict_file("A")}"\n'
        b_keys = f'verdict_file = "{pair.verdict_file("B")}"\n'
        with (
            sipwatch_run(tmp_path / "swB", kamailio_noqop.uri("udp", user="ping"), b_keys),
            sipwatch_run(tmp_path / "swA", kam.uri("udp", user="ping"), a_keys) as a,
        ):
            pair.wait_holder("A", timeout_s=20)
            kam.set_fault("OPTIONS", drop=True)
            pair.wait_holder("B", timeout_s=10)
            kam.clear_faults()
            pair.wait_holder("A", timeout_s=10)
            a.kill()  # SIGKILL: the verdict file stays, naming a dead daemon
            a.wait(5)
            assert pair.verdict_file("A").exists()
            pair.wait_holder("B", timeout_s=10)


# -- the script alone, on crafted files ------------------------------------------------------


def _boot_s() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME))


def _verdict(path: Path, **override: object) -> Path:
    fields: dict[str, object] = {
        "version": 1,
        "verdict": "green",
        "code": 0,
        "score": 100,
        "eligible": 1,
        "active": 1,
        "pid": os.getpid(),
        "boot_s": _boot_s(),
        "config": "/etc/sipwatch/sipwatch.toml",
        "config_sha256": "0" * 64,
        "config_current": 1,
        "reason": "",
    }
    fields.update(override)
    path.write_text("".join(f"{k}={v}\n" for k, v in fields.items()))
    return path


def _check(path: Path, max_age: str = "5") -> int:
    return subprocess.run(
        ["sh", str(VRRP_CHECK), str(path), max_age], timeout=10, capture_output=True
    ).returncode


@pytest.mark.parametrize(
    ("override", "rc"),
    [
        ({}, 0),
        ({"verdict": "yellow", "code": 190}, 0),  # degraded: keeps the VIP
        ({"config_current": 0}, 0),  # an edited, not yet reloaded config is no failure
        ({"verdict": "red", "code": 1}, 1),
        ({"eligible": 0}, 1),
        ({"version": 2}, 1),
        ({"boot_s": "old"}, 1),
        ({"pid": 0x3FFFFFFF}, 1),  # no such process: the daemon is gone
    ],
)
def test_vrrp_check_script_verdicts(tmp_path, override, rc):
    assert _check(_verdict(tmp_path / "verdict", **override)) == rc


def test_vrrp_check_script_treats_a_stale_or_missing_file_as_failure(tmp_path):
    assert _check(tmp_path / "absent") == 1
    assert _check(_verdict(tmp_path / "old", boot_s=_boot_s() - 30)) == 1
    assert _check(_verdict(tmp_path / "fresh", boot_s=_boot_s() - 3)) == 0
    assert _check(_verdict(tmp_path / "fresh2"), max_age="x") == 1
