"""`sipwatch run` as a real process against a real Kamailio: endpoints, verdict changes,
SIGHUP reload (bad config kept out), SIGTERM, hostile HTTP clients."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from testbed import free_port

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")

POLICY = """
startup_grace_s = 0.0
[defaults]
fall = 2
rise = 2
window_failures = 3
window_s = 10.0
[kinds.sip_options]
role = "critical"
"""


def config(
    uri: str, port: int, names: tuple[str, ...] = ("pbx-udp",), interval: float = 0.5
) -> str:
    probes = "".join(
        f'[[probes]]\nname = "{n}"\nkind = "sip_options"\nuri = "{uri}"\n'
        f"interval_s = {interval}\ntimeout_s = 0.4\n"
        for n in names
    )
    return f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\n{probes}'


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(pred, timeout_s: float = 10.0, step: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout_s} s")


@contextlib.contextmanager
def running(
    cfg: Path,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`sipwatch run --config CFG` (in `env`, `preexec_fn` run in the child first), its output
    in LOG; stopped (SIGTERM, then SIGKILL) at the end of the block, by PID, unless it has
    already exited. The one way the functional tests start a daemon."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SIPWATCH, "run", "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=preexec_fn,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def daemon(kam, tmp_path):
    (tmp_path / "policy.toml").write_text(POLICY)
    cfg = tmp_path / "sipwatch.toml"
    port = free_port("tcp")
    cfg.write_text(config(kam.uri("udp", user="ping"), port))
    log = tmp_path / "daemon.log"
    with running(cfg, log) as proc:
        wait_for(lambda: _listening(port))
        yield proc, port, cfg, log


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_endpoints_follow_the_pbx(daemon, kam):
    proc, port, _, _ = daemon
    assert get(port, "/livez") == (200, "ok\n")
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    assert get(port, "/active")[0] == 200
    status = json.loads(get(port, "/status")[1])
    assert status["verdict"] == "green" and status["source"] == "daemon"
    probe = status["probes"]["pbx-udp"]
    assert probe["runs"] >= 1 and probe["last"]["outcome"] == "ok"
    assert probe["rtt_ewma_ms"] is not None and probe["rtt_p95_ms"] is not None
    metrics = get(port, "/metrics")[1]
    assert 'sipwatch_probe_success{kind="sip_options",probe="pbx-udp"} 1.0' in metrics
    assert "sipwatch_verdict 0.0" in metrics

    kam.set_fault("OPTIONS", drop=True)
    # yellow while failures accumulate (not down yet), red once `fall` is reached
    code, _ = wait_for(lambda: (r := get(port, "/readyz"))[1].startswith("red") and r)
    assert code == 503
    assert get(port, "/active")[0] == 503
    assert "sipwatch_verdict 2.0" in get(port, "/metrics")[1]
    failures = json.loads(get(port, "/status")[1])["probes"]["pbx-udp"]["recent_failures"]
    assert failures and failures[-1]["outcome"] == "timeout"

    kam.clear_faults()
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    assert proc.poll() is None


def test_sighup_reload_rejects_bad_config_and_takes_good(daemon, kam):
    proc, port, cfg, log = daemon
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    good = cfg.read_text()
    cfg.write_text(good + "\n[sip]\nt1_s = -1\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b"reload_rejected" in log.read_bytes())
    assert get(port, "/readyz")[0] == 200 and proc.poll() is None
    assert list(json.loads(get(port, "/status")[1])["probes"]) == ["pbx-udp"]

    cfg.write_text(config(kam.uri("udp", user="ping"), port, names=("pbx-udp", "pbx-udp-2")))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "pbx-udp-2" in json.loads(get(port, "/status")[1])["probes"])
    status = json.loads(get(port, "/status")[1])
    assert status["verdict"] == "green"
    assert status["probes"]["pbx-udp"]["runs"] > 1  # history carried over the reload


def test_a_config_with_no_probes_is_refused_at_start_and_at_reload(daemon, tmp_path):
    """An empty or half-written file has no probes: a daemon of it would judge nothing and
    say green and ready for ever. At start it exits 6; at a reload the old config stays."""
    proc, port, cfg, log = daemon
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    cfg.write_text("")  # a reload that reads the file in the middle of its rewrite
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b"reload_rejected" in log.read_bytes())
    assert b"no probes configured" in log.read_bytes()
    assert list(json.loads(get(port, "/status")[1])["probes"]) == ["pbx-udp"]
    assert proc.poll() is None

    empty = tmp_path / "empty.toml"
    empty.write_text("[daemon]\nhttp_port = 0\n")
    done = subprocess.run(
        [SIPWATCH, "run", "--config", str(empty)], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 6, done.stdout + done.stderr
    assert "no probes configured" in done.stdout + done.stderr


def test_sigterm_exits_zero_within_bound(daemon):
    proc, port, _, log = daemon
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 3
    assert b"event=exit code=0" in log.read_bytes()


def test_hostile_http_clients_do_not_stop_probing(daemon):
    proc, port, _, _ = daemon
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    runs = json.loads(get(port, "/status")[1])["probes"]["pbx-udp"]["runs"]
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        with socket.create_connection(("127.0.0.1", port)) as junk:
            junk.sendall(b"\x16\x03\x01garbage\r\n\r\n")
            junk.settimeout(2)
            assert junk.recv(100).startswith(b"HTTP/1.0 400")
        with socket.create_connection(("127.0.0.1", port)) as big:
            big.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100000 + b"\r\n\r\n")
            big.settimeout(2)
            head = big.recv(100)
        assert head.split(b" ")[1].startswith(b"4"), head  # refused, not served
        # probing went on (interval 0.5 s: 2 more runs need ~1 s; a loaded CI machine more)
        wait_for(
            lambda: json.loads(get(port, "/status")[1])["probes"]["pbx-udp"]["runs"] >= runs + 2,
            timeout_s=5.0,
        )
    finally:
        for s in slow:
            s.close()
    assert proc.poll() is None


def test_bad_config_at_start_exits_6(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sip]\nt1_s = 0\n")
    proc = subprocess.run(
        [SIPWATCH, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=20
    )
    assert proc.returncode == 6
    assert "sip.t1_s" in proc.stdout + proc.stderr


def check(cfg: Path, *extra: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [SIPWATCH, "check", "--config", str(cfg), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_check_asks_the_running_daemon(daemon, kam):
    _, port, cfg, _ = daemon
    wait_for(lambda: get(port, "/readyz")[0] == 200)
    code, out = check(cfg)
    assert (code, out["source"], out["verdict"]) == (0, "daemon", "green")
    code, out = check(cfg, "--no-daemon")
    assert (code, out["source"]) == (0, "probed")

    kam.set_fault("OPTIONS", drop=True)
    wait_for(lambda: get(port, "/readyz")[1].startswith("red"))
    code, out = check(cfg)
    assert (code, out["source"], out["verdict"]) == (1, "daemon", "red")
    kam.clear_faults()


def test_check_probes_itself_when_no_daemon_answers(kam, tmp_path):
    (tmp_path / "policy.toml").write_text(POLICY)
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(config(kam.uri("udp", user="ping"), free_port("tcp")))
    code, out = check(cfg)
    assert (code, out["source"], out["verdict"]) == (0, "probed", "green")


def test_pbx_exit_is_seen_at_once_not_at_the_next_interval(tmp_path):
    """A pbx_process probe every 30 s: the PBX's exit (a real process, ours, killed by PID)
    still re-runs the probes within about a second, through the pidfd the daemon armed."""
    pbx = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "policy.toml").write_text(POLICY)
        (tmp_path / "pbx.pid").write_text(f"{pbx.pid}\n")
        port = free_port("tcp")
        cfg = tmp_path / "sipwatch.toml"
        cfg.write_text(
            f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\n'
            f'[[probes]]\nname = "pbx"\nkind = "pbx_process"\npidfile = "{tmp_path}/pbx.pid"\n'
            "interval_s = 30.0\ntimeout_s = 2.0\n"
        )
        log = tmp_path / "daemon.log"
        with running(cfg, log):

            def pbx_probe() -> dict:
                if not _listening(port):
                    return {}
                return json.loads(get(port, "/status")[1])["probes"]["pbx"]

            wait_for(lambda: pbx_probe().get("runs") == 1)
            assert pbx_probe()["last"]["outcome"] == "ok"
            pbx.kill()
            pbx.wait(5)
            killed = time.monotonic()
            wait_for(lambda: pbx_probe().get("runs") == 2, timeout_s=5)
            assert time.monotonic() - killed < 5 < 30  # the interval would have been 30 s
            assert pbx_probe()["last"]["outcome"] == "down"
            assert f"reprobe_all reason=pbx pid {pbx.pid} exited" in log.read_text()
    finally:
        if pbx.poll() is None:
            pbx.kill()
            pbx.wait(5)


def test_actions_are_counted_in_metrics(kam, tmp_path):
    """sipwatch_actions_total{action,result} (README) counts the cluster agent's actions: it
    never moved, because the daemon was built without the metrics' action callback."""
    from testbed.pacemaker import FileCluster

    cluster = FileCluster.build(tmp_path / "cib.xml")
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        config(kam.uri("udp", user="ping"), port)
        + f'[cluster]\nagent = "health_attribute"\ndry_run = true\nnode = "n1"\n'
        f'cib_file = "{cluster.path}"\n'
    )
    with running(cfg, tmp_path / "daemon.log"):
        try:
            wait_for(lambda: _listening(port))
            kam.set_fault("OPTIONS", code=500)  # green -> red: a "would" publish_health

            def counted() -> bool:
                text = get(port, "/metrics")[1]
                return 'sipwatch_actions_total{action="publish_health",result="would"}' in text

            wait_for(counted, timeout_s=15)
        finally:
            kam.clear_faults()


def test_metrics_count_the_event_loop_tasks(kam, tmp_path):
    """sipwatch_asyncio_tasks (what bench/soak.py watches for a task leak) counts the live
    tasks: at least one per probe loop, read at the scrape."""
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    names = ("pbx-a", "pbx-b", "pbx-c", "pbx-d")
    cfg.write_text(config(kam.uri("udp", user="ping"), port, names))
    with running(cfg, tmp_path / "daemon.log"):
        wait_for(lambda: _listening(port))

        def tasks() -> float | None:
            text = get(port, "/metrics")[1]
            for line in text.splitlines():
                if line.startswith("sipwatch_asyncio_tasks "):
                    return float(line.split()[1])
            return None

        count = wait_for(tasks)
        assert count >= len(names) + 1  # the probe loops and the scrape's own handler
