"""`sipwatch check` end to end: the real CLI in a subprocess against the real Kamailio (with
its fault switches) and closed ports; exit codes and JSON as the OCF shim will see them."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")


def options(name: str, uri: str, **extra: Any) -> str:
    lines = ["[[probes]]", f'name = "{name}"', 'kind = "sip_options"', f'uri = "{uri}"']
    lines += ["timeout_s = 1.0"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def write_config(tmp_path: Path, *probes: str, head: str = "") -> Path:
    path = tmp_path / "sipwatch.toml"
    path.write_text(head + "[sip]\nt1_s = 0.25\n\n" + "\n".join(probes))
    return path


def check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPWATCH_")}
    return subprocess.run(
        [SIPWATCH, "check", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def check_json(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = check(config, "--json", *args)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def reasons(payload: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["probe"], r["outcome"], r["effect"]) for r in payload["reasons"]]


def test_healthy_is_green_exit_0(kam, tmp_path):
    cfg = write_config(
        tmp_path, options("pbx-udp", kam.uri("udp")), options("pbx-tcp", kam.uri("tcp"))
    )
    code, out = check_json(cfg)
    assert code == 0, out
    assert (out["verdict"], out["score"], out["eligible"], out["active"]) == (
        "green",
        100,
        True,
        True,
    )
    assert (out["source"], out["mode"], out["exit_code"]) == ("probed", "one_shot", 0)
    assert out["reasons"] == [] and out["missing_tools"] == []
    assert out["policy"].endswith("policies/default.toml")
    probes = {p["probe"]: p for p in out["probes"]}
    assert {n: p["outcome"] for n, p in probes.items()} == {"pbx-udp": "ok", "pbx-tcp": "ok"}
    assert probes["pbx-udp"]["status_code"] == 200 and probes["pbx-udp"]["rtt_ms"] > 0


def test_options_503_with_retry_after_is_degraded_exit_190(kam, tmp_path):
    kam.set_fault("OPTIONS", code=503, reason="Maintenance", retry_after_s=30)
    cfg = write_config(tmp_path, options("pbx-udp", kam.uri("udp")))
    code, out = check_json(cfg)
    assert code == 190, out
    assert out["verdict"] == "yellow" and 50 <= out["score"] < 90
    assert reasons(out) == [("pbx-udp", "draining", "yellow")]
    assert out["probes"][0]["retry_after_s"] == 30


def test_dropped_options_is_red_exit_1(kam, tmp_path):
    kam.set_fault("OPTIONS", drop=True)
    cfg = write_config(tmp_path, options("pbx-udp", kam.uri("udp")))
    code, out = check_json(cfg)
    assert code == 1, out
    assert out["verdict"] == "red" and out["score"] < 50
    assert reasons(out) == [("pbx-udp", "timeout", "red")]
    assert out["probes"][0]["retransmissions"] >= 1  # the transaction retried before failing


def test_closed_port_is_red_exit_1(closed_udp_port, tmp_path):
    cfg = write_config(tmp_path, options("pbx-udp", f"sip:127.0.0.1:{closed_udp_port}"))
    code, out = check_json(cfg)
    assert code == 1, out
    assert reasons(out) == [("pbx-udp", "refused", "red")]


def test_missing_password_file_is_reported_never_red(kam, tmp_path):
    cfg = write_config(
        tmp_path,
        options("pbx-udp", kam.uri("udp")),
        options(
            "pbx-auth",
            kam.uri("udp"),
            user="monitor",
            password_file=str(tmp_path / "no-such.pass"),
        ),
    )
    done = check(cfg, "--json")
    out = json.loads(done.stdout)
    assert done.returncode == 0, out
    assert out["verdict"] == "green" and out["score"] == 100
    (reason,) = out["reasons"]
    assert (reason["probe"], reason["outcome"], reason["local"]) == (
        "pbx-auth",
        "local_error",
        True,
    )
    assert reason["effect"] == "none" and "no-such.pass" in reason["detail"]
    assert "LOCAL ERROR" in done.stderr and "pbx-auth" in done.stderr


def test_only_local_errors_is_green_not_red(kam, tmp_path):
    cfg = write_config(
        tmp_path,
        options("pbx-auth", kam.uri("udp"), user="monitor", password_env="SIPWATCH_TEST_UNSET"),
    )
    code, out = check_json(cfg)
    assert code == 0 and out["verdict"] == "green"
    assert [r["local"] for r in out["reasons"]] == [True]


def test_the_configs_policy_is_applied_and_the_cli_overrides_it(kam, tmp_path):
    # A policy (next to the config, named relatively) whose latency threshold no real
    # answer can meet: a healthy PBX is "slow", hence yellow.
    (tmp_path / "strict.toml").write_text("[defaults]\nrole = 'critical'\nrtt_yellow_ms = 0.001\n")
    cfg = write_config(
        tmp_path, options("pbx-udp", kam.uri("udp")), head='policy = "strict.toml"\n'
    )
    code, out = check_json(cfg)
    assert code == 190, out
    assert reasons(out) == [("pbx-udp", "slow", "yellow")]
    assert out["policy"] == str(tmp_path / "strict.toml")
    code, out = check_json(cfg, "--policy", "default")
    assert code == 0 and out["verdict"] == "green"


@pytest.mark.parametrize(
    "config, policy_file, message",
    [
        ("[sip]\nt1_s = -1\n", None, "sip.t1_s"),
        ('policy = "no-such-policy"\n', None, "no policy named 'no-such-policy'"),
        ('policy = "p.toml"\n', "[defaults]\nfall = 0\n", "defaults.fall"),
        ("", None, "no probes configured"),
    ],
    ids=["bad config key", "unknown policy", "bad policy key", "no probes"],
)
def test_bad_config_exit_6(tmp_path, config, policy_file, message):
    path = tmp_path / "sipwatch.toml"
    probe = options("pbx-udp", "sip:127.0.0.1:5060") if "probes" not in message else ""
    path.write_text(config + probe)
    if policy_file is not None:
        (tmp_path / "p.toml").write_text(policy_file)
    done = check(path)
    assert done.returncode == 6, (done.stdout, done.stderr)
    assert message in done.stderr
    done = check(path, "--json")
    assert done.returncode == 6
    out = json.loads(done.stdout)
    assert out["verdict"] is None and out["exit_code"] == 6 and message in out["error"]


def test_missing_config_file_exit_6(tmp_path):
    done = check(tmp_path / "nope.toml")
    assert done.returncode == 6 and "does not exist" in done.stderr


def test_nagios_format_with_perfdata(kam, closed_udp_port, tmp_path):
    cfg = write_config(tmp_path, options("pbx-udp", kam.uri("udp")))
    done = check(cfg, "--format", "nagios")
    assert done.returncode == 0, done.stdout
    text, _, perf = done.stdout.strip().partition(" | ")
    assert text == "SIPWATCH OK - green, score 100"
    assert perf.startswith("'score'=100;90:;50:;0;100 'pbx-udp_rtt'=")
    assert perf.endswith("ms;300;;0;")

    cfg = write_config(tmp_path, options("pbx-udp", f"sip:127.0.0.1:{closed_udp_port}"))
    done = check(cfg, "--format", "nagios")
    assert done.returncode == 2
    assert done.stdout.startswith("SIPWATCH CRITICAL - red, score 0: pbx-udp refused")


def test_text_summary(kam, tmp_path):
    kam.set_fault("OPTIONS", code=503, reason="Maintenance", retry_after_s=30)
    cfg = write_config(tmp_path, options("pbx-udp", kam.uri("udp")))
    done = check(cfg)
    assert done.returncode == 190
    first, *rest = done.stdout.splitlines()
    assert first.startswith("YELLOW  score ") and "eligible" in first and "probed once" in first
    assert any(line.split()[:3] == ["yellow", "pbx-udp", "draining"] for line in rest), rest


# --- --format shell, and a daemon that answers badly ------------------------------------------


def test_shell_format_is_one_line_for_read(kam, closed_udp_port, tmp_path):
    cfg = write_config(tmp_path, options("pbx-udp", kam.uri("udp")))
    done = check(cfg, "--format", "shell")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "verdict=green code=0 score=100 eligible=1 active=1 source=probed reason=''\n"
    )
    cfg = write_config(tmp_path, options("pbx-udp", f"sip:127.0.0.1:{closed_udp_port}"))
    done = check(cfg, "--format", "shell")
    assert done.returncode == 1
    line = done.stdout.rstrip("\n")
    assert "\n" not in line and line.startswith("verdict=red code=1 score=0 ")
    assert line.endswith("'") and " reason='" in line, line


def test_shell_format_on_a_config_error(tmp_path):
    done = check(tmp_path / "nope.toml", "--format", "shell")
    assert done.returncode == 6
    assert done.stdout.startswith("verdict= code=6 reason='") and "does not exist" in done.stdout


class FakeDaemon:
    """Something listening on daemon.http_port that answers every connection with `handler`.
    `held` records, per connection, the seconds from accept until the handler was done (for
    the silent and trickling handlers: until check hung up on them)."""

    def __init__(self, handler: Any) -> None:
        self.held: list[float] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            started = time.monotonic()
            with conn:
                try:
                    conn.settimeout(5)
                    conn.recv(65536)
                    self.handler(conn)
                except OSError:
                    pass  # check gave up on us
            self.held.append(time.monotonic() - started)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.close()


PEER_HOLD_S = 20.0  # how long the silent and trickling daemons would go on, left alone


def _trickle(conn: socket.socket) -> None:
    """A byte every 50 ms for PEER_HOLD_S, unless check hangs up first (send fails)."""
    for byte in (b'HTTP/1.0 200 OK\r\n\r\n{"verdict": "green"' + b" " * 1000)[:400]:
        conn.sendall(bytes([byte]))
        time.sleep(0.05)


def _silent(conn: socket.socket) -> None:
    """Say nothing until check hangs up (EOF), for PEER_HOLD_S at most."""
    conn.settimeout(PEER_HOLD_S)
    while conn.recv(4096):
        pass


def _json_answer(body: bytes) -> Any:
    return lambda conn: conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + body)


@pytest.mark.parametrize(
    "handler",
    [
        _json_answer(b"<html>garbage</html>"),
        _json_answer(b"[" + b"1," * (5 << 20) + b"1]"),  # 10 MiB
        _trickle,
        _silent,
        "wrong types",
    ],
    ids=["garbage", "10 MiB", "trickle", "silent", "wrong types"],
)
def test_a_daemon_answering_badly_makes_check_probe_itself(closed_udp_port, tmp_path, handler):
    """Whatever answers on the daemon's port, check never hangs on it nor dies of it: it
    probes by itself, as when no daemon runs (source "probed")."""
    head = "[daemon]\nhttp_port = {port}\n"
    probe = options("pbx-udp", f"sip:127.0.0.1:{closed_udp_port}")
    if handler == "wrong types":

        def handler(conn: socket.socket) -> None:
            status = {
                "verdict": "green", "score": "100", "reasons": [], "eligible": True,
                "source": "daemon", "config_sha256": sha,
                "probes": {"pbx-udp": {"last": {"probe": "pbx-udp", "outcome": 5}}},
            }  # fmt: skip
            _json_answer(json.dumps(status).encode())(conn)

    daemon = FakeDaemon(handler)
    try:
        cfg = write_config(tmp_path, probe, head=head.format(port=daemon.port))
        sha = hashlib.sha256(cfg.read_bytes()).hexdigest()
        for fmt in ("json", "shell"):
            done = check(cfg, "--format", fmt)
            assert "Traceback" not in done.stderr, done.stderr
            assert done.returncode == 1, (done.stdout, done.stderr)
        assert done.stdout.startswith("verdict=red code=1 ") and "source=probed" in done.stdout
        assert json.loads(check(cfg, "--json").stdout)["source"] == "probed"
    finally:
        daemon.close()
    # check hung up on its own timeouts (0.5 s a request), not when the daemon let it go:
    # no connection was held anywhere near as long as the silent or trickling daemon would
    # have gone on (PEER_HOLD_S). Measured per connection at the daemon, not as the wall time
    # of whole processes, so a loaded machine's slow Python start does not count.
    # Each check asks twice at most (the quick path, then the full one).
    assert daemon.held and len(daemon.held) <= 3 * 2, daemon.held
    assert max(daemon.held) < PEER_HOLD_S / 5, daemon.held
