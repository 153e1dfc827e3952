"""What operators do to a running daemon (issue 17 §3, docs/bad-input.md): start a second
one for the same node (it must refuse, naming the first, not fight over the node's health
attribute), and send a storm of SIGHUPs (the daemon keeps probing and answering, reloads
coalesce, nothing leaks). Real `sipwatch run`, real Kamailio, real crm tools on a file CIB."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import test_daemon
from test_daemon import SIPWATCH, running

from testbed import free_port

#: CIB_file never names a live cluster (tests/functional/conftest.py: never_live).
pytestmark = [pytest.mark.peers, pytest.mark.usefixtures("never_live")]
HEALTH = "#health-sipwatch"
wait_for = partial(test_daemon.wait_for, timeout_s=15.0, step=0.05)


def config(tmp_path: Path, kam, cib: Path, node: str, name: str) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(
        f'[daemon]\nhttp_port = {free_port("tcp")}\nverdict_file = ""\n'
        f'[cluster]\nagent = "health_attribute"\ndry_run = false\nnode = "{node}"\n'
        f'cib_file = "{cib}"\nfreeze_file = "{tmp_path / "freeze"}"\n'
        f'[[probes]]\nname = "pbx"\nkind = "sip_options"\nuri = "{kam.uri("udp", user="ping")}"\n'
        "interval_s = 0.3\ntimeout_s = 0.25\n"
    )
    return cfg


@contextlib.contextmanager
def daemon(cfg: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = cfg.with_suffix(".log")
    with running(cfg, log) as proc:
        yield proc, log


def port_of(cfg: Path) -> int:
    return int(cfg.read_text().split("http_port = ")[1].split("\n")[0])


def status(cfg: Path) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port_of(cfg)}/status", timeout=2) as r:
        return dict(json.loads(r.read()))


def published(log: Path) -> bool:
    return b"action=publish_health result=done" in log.read_bytes()


def test_a_second_daemon_for_the_same_node_refuses_naming_the_first(kam, template, tmp_path):
    cluster = template.copy(tmp_path / "cib.xml")
    first_cfg = config(tmp_path, kam, cluster.path, "n1", "first")
    with daemon(first_cfg) as (first, first_log):
        wait_for(lambda: published(first_log))
        before = cluster.path.read_bytes()
        second = subprocess.run(
            [SIPWATCH, "run", "--config", str(config(tmp_path, kam, cluster.path, "n1", "second"))],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 6, second
        assert (
            f"another sipwatch (pid {first.pid}) already runs the cluster agent for node 'n1'"
            in (second.stdout)
        ), second.stdout
        assert "Traceback" not in second.stdout + second.stderr
        assert "event=agent_locked node=n1" in second.stderr
        assert first.poll() is None and cluster.path.read_bytes() == before
        # Another node of the same cluster is no conflict.
        with daemon(config(tmp_path, kam, cluster.path, "n2", "other")) as (other, other_log):
            wait_for(lambda: published(other_log))
            assert other.poll() is None
        first.kill()  # the kernel releases the lock with the process, even on SIGKILL
        first.wait(5)
    lock = cluster.path.parent / "cib.xml.sipwatch-n1.lock"
    with daemon(config(tmp_path, kam, cluster.path, "n1", "third")) as (third, third_log):
        wait_for(lambda: b"event=daemon_started" in third_log.read_bytes())
        assert third.poll() is None and lock.read_text() == f"{third.pid}\n"


def test_a_sighup_storm_leaves_the_daemon_probing_and_answering(kam, template, tmp_path):
    cluster = template.copy(tmp_path / "cib.xml")
    cfg = config(tmp_path, kam, cluster.path, "n1", "storm")
    with daemon(cfg) as (proc, log):
        wait_for(lambda: published(log))
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        for _ in range(100):
            proc.send_signal(signal.SIGHUP)
        good = cfg.read_text()
        cfg.write_text("[daemon\n")  # a bad config in the middle of the storm
        for _ in range(20):
            proc.send_signal(signal.SIGHUP)
        wait_for(lambda: b"event=reload_rejected" in log.read_bytes())
        cfg.write_text(good)
        for _ in range(100):
            proc.send_signal(signal.SIGHUP)
        reloads = lambda: log.read_bytes().count(b"event=config_reloaded")  # noqa: E731
        wait_for(lambda: reloads() >= 1)
        runs = int(status(cfg)["probes"]["pbx"]["runs"])  # type: ignore[index]
        wait_for(lambda: int(status(cfg)["probes"]["pbx"]["runs"]) >= runs + 3)  # type: ignore[index]
        assert proc.poll() is None
        assert status(cfg)["verdict"] == "green"
        text = log.read_text()
        assert "Traceback" not in text
        assert reloads() <= 220  # coalesced, never more than one per signal
        # No fd left behind by the reloads (sockets, the agent lock, CIB reads).
        assert len(os.listdir(f"/proc/{proc.pid}/fd")) <= fds + 4
