"""`[[hooks]]` and `daemon.track_file` in a real `sipwatch run` against a real Kamailio: a
hook gets the verdict change in its environment (and nothing else of the daemon's); a hook
that hangs is killed at its timeout while probing goes on; an unwritable track file is a
config error at start."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon import _listening, wait_for

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


def runs(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
        return int(json.loads(r.read())["probes"]["pbx-udp"]["runs"])


@contextlib.contextmanager
def sipwatch_run(tmp_path: Path, uri: str, extra: str) -> Iterator[tuple[int, Path]]:
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\nverdict_file = ""\n'
        f'[cluster]\nnode = "pbx-a"\n'
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\nuri = "{uri}"\n'
        f"interval_s = 0.3\ntimeout_s = 0.25\n{extra}"
    )
    log = tmp_path / "daemon.log"
    env = {**os.environ, "SIPWATCH_TEST_SECRET": "s3cret"}  # must not reach a hook
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SIPWATCH, "run", "--config", str(cfg), "--log-format", "text"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(lambda: _listening(port))
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_hook_gets_the_verdict_change(kam, tmp_path):
    record = tmp_path / "hook.env"
    script = tmp_path / "record.sh"
    script.write_text(f'#!/bin/sh\nenv >> "{record}"\necho ---- >> "{record}"\necho hello\n')
    script.chmod(0o755)
    hook = f'[[hooks]]\nargv = ["{script}"]\non = ["red", "green"]\ntimeout_s = 5\n'
    with sipwatch_run(tmp_path, kam.uri("udp", user="ping"), hook) as (_, log):
        wait_for(lambda: b"event=daemon_started" in log.read_bytes())
        time.sleep(1)
        assert not record.exists()  # green from the start: no change, no hook
        kam.set_fault("OPTIONS", drop=True)
        wait_for(lambda: record.exists() and "----" in record.read_text())
        first = record.read_text().split("----")[0]
        env = dict(line.split("=", 1) for line in first.strip().splitlines())
        assert env["SIPWATCH_NEW_VERDICT"] == "red"
        assert env["SIPWATCH_OLD_VERDICT"] in ("green", "yellow")
        assert env["SIPWATCH_NODE"] == "pbx-a"
        assert env["SIPWATCH_REASON"].startswith("down: 2 failures in a row")
        assert "SIPWATCH_TEST_SECRET" not in env and "s3cret" not in first
        kam.clear_faults()
        wait_for(lambda: record.read_text().count("----") == 2)
        second = record.read_text().split("----")[1]
        assert "SIPWATCH_NEW_VERDICT=green" in second and "SIPWATCH_OLD_VERDICT=red" in second
        text = log.read_text()
        assert "event=hook_done hook=record.sh rc=0" in text


def test_hanging_hook_is_killed_at_its_timeout_and_probing_goes_on(kam, tmp_path):
    pidfile = tmp_path / "hang.pid"
    script = tmp_path / "hang.sh"
    # a grandchild in the same group too: the whole group must go
    script.write_text(f'#!/bin/sh\nsleep 300 &\necho $! > "{pidfile}"\nsleep 300\n')
    script.chmod(0o755)
    hook = f'[[hooks]]\nargv = ["{script}"]\ntimeout_s = 2.0\n'
    with sipwatch_run(tmp_path, kam.uri("udp", user="ping"), hook) as (port, log):
        wait_for(lambda: runs(port) > 0)
        kam.set_fault("OPTIONS", drop=True)
        wait_for(pidfile.exists)
        started = time.monotonic()
        during = runs(port)
        time.sleep(1.5)  # the hook hangs: results keep arriving (a run every ~0.55 s)
        assert runs(port) >= during + 2
        wait_for(lambda: b"event=hook_timeout hook=hang.sh" in log.read_bytes(), timeout_s=5)
        assert time.monotonic() - started < 4
        grandchild = int(pidfile.read_text())
        wait_for(lambda: not Path(f"/proc/{grandchild}").exists(), timeout_s=5)
        after = runs(port)
        wait_for(lambda: runs(port) >= after + 2, timeout_s=5)
        kam.clear_faults()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('track_file = "/proc/no/such/dir/track"\n', "daemon.track_file: cannot write"),
        ("agent_check_port = 70000\n", "daemon.agent_check_port"),
    ],
)
def test_bad_integration_config_at_start_exits_6(tmp_path, extra, message):
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'[daemon]\nhttp_port = 0\nverdict_file = ""\n{extra}'
        '[[probes]]\nname = "p"\nkind = "sip_options"\nuri = "sip:127.0.0.1:9"\n'
    )
    done = subprocess.run(
        [SIPWATCH, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 6
    assert message in done.stdout + done.stderr


def test_hook_that_is_not_executable_is_a_config_error(tmp_path):
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        '[daemon]\nhttp_port = 0\nverdict_file = ""\n'
        '[[probes]]\nname = "p"\nkind = "sip_options"\nuri = "sip:127.0.0.1:9"\n'
        f'[[hooks]]\nargv = ["{tmp_path}/missing-hook"]\n'
    )
    done = subprocess.run(
        [SIPWATCH, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 6
    assert "hooks[0].argv[0]" in done.stdout + done.stderr
