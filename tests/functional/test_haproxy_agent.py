"""`daemon.agent_check_port` against a real HAProxy (Debian `haproxy`) on loopback ports:
the backend's server goes UP / DRAIN / DOWN / MAINT as the daemon's verdict, driven by real
Kamailio faults, changes; hostile agent-check clients never stop probing."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon import _listening, running

from testbed import free_port

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")

POLICY = """
startup_grace_s = 0.0
active_when = ["vip"]
[defaults]
fall = 2
rise = 2
window_failures = 3
window_s = 10.0
[kinds.sip_options]
role = "critical"
rtt_yellow_ms = 60.0
[kinds.vip]
role = "critical"
on_standby = "ignore"
"""


def wait_for(pred, timeout_s: float = 10.0, step: float = 0.1):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")


def status(http_port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def agent_says(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.settimeout(2)
        data = b""
        while chunk := s.recv(100):
            data += chunk
    return data.decode()


@contextlib.contextmanager
def sipwatch_run(tmp_path: Path, probes: str, agent_port: int) -> Iterator[int]:
    (tmp_path / "policy.toml").write_text(POLICY)
    http_port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {http_port}\nverdict_file = ""\n'
        f"agent_check_port = {agent_port}\n{probes}"
    )
    log = tmp_path / "daemon.log"
    with running(cfg, log):
        wait_for(lambda: _listening(http_port) and _listening(agent_port))
        yield http_port


def options_probe(uri: str) -> str:
    return (
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\nuri = "{uri}"\n'
        "interval_s = 0.3\ntimeout_s = 0.25\n"
    )


class HAProxy:
    def __init__(self, workdir: Path, server_port: int, agent_port: int) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            pytest.fail("haproxy is not installed: apt-get install -y haproxy", pytrace=False)
        self.sock = workdir / "haproxy.sock"
        cfg = workdir / "haproxy.cfg"
        # The recipe of the README: a TCP health check of the PBX, the agent for the rest.
        cfg.write_text(
            f"global\n  stats socket {self.sock} mode 600 level admin\n"
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n"
            "  timeout server 5s\n"
            "backend pbx\n"
            f"  server n1 127.0.0.1:{server_port} weight 100 check inter 200ms"
            f" agent-check agent-port {agent_port} agent-inter 200ms\n"
        )
        self.log = workdir / "haproxy.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(self.sock.exists, timeout_s=10)

    def server(self) -> dict[str, str]:
        """n1's row of `show stat`."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.sock))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("svname") == "n1":
                return row
        raise AssertionError(f"no n1 in show stat: {data!r}")

    def wait_status(self, want: str, timeout_s: float = 15.0) -> dict[str, str]:
        def seen() -> dict[str, str] | None:
            row = self.server()
            return row if row["status"].split(" ")[0] == want else None

        try:
            return wait_for(seen, timeout_s=timeout_s)
        except AssertionError:
            raise AssertionError(
                f"HAProxy never showed {want}: {self.server()}\n{self.log.read_text()[-2000:]}"
            ) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def haproxy_factory(tmp_path: Path) -> Iterator:
    started: list[HAProxy] = []

    def start(server_port: int, agent_port: int) -> HAProxy:
        h = HAProxy(tmp_path, server_port, agent_port)
        started.append(h)
        return h

    try:
        yield start
    finally:
        for h in started:
            h.stop()


def test_haproxy_follows_the_verdict(kam, tmp_path, haproxy_factory):
    agent_port = free_port("tcp")
    with sipwatch_run(tmp_path, options_probe(kam.uri("udp", user="ping")), agent_port) as http:
        haproxy = haproxy_factory(kam.tcp_port, agent_port)
        row = haproxy.wait_status("UP")
        assert row["weight"] == "100"
        assert agent_says(agent_port) == "up ready 100%\n"

        kam.set_fault("OPTIONS", code=503, retry_after_s=2)  # draining: 503 + Retry-After
        haproxy.wait_status("DRAIN")

        kam.set_fault("OPTIONS", drop=True)  # no answer: red after `fall`
        row = haproxy.wait_status("DOWN")
        assert status(http)["verdict"] == "red"
        assert "pbx-udp" in row["last_agt"], row  # the reason HAProxy shows

        kam.clear_faults()  # back: up, ready, full weight (the agent undoes its own DOWN)
        wait_for(
            lambda: (r := haproxy.server())["status"] == "UP" and r["weight"] == "100" and r,
            timeout_s=15,
        )
        assert status(http)["verdict"] == "green"


def test_haproxy_weight_halves_on_yellow(kam, tmp_path, haproxy_factory):
    agent_port = free_port("tcp")
    with sipwatch_run(tmp_path, options_probe(kam.uri("udp", user="ping")), agent_port) as http:
        haproxy = haproxy_factory(kam.tcp_port, agent_port)
        haproxy.wait_status("UP")
        kam.set_fault("OPTIONS", delay_ms=150)  # smoothed RTT above 60 ms: yellow, "slow"
        wait_for(lambda: status(http)["verdict"] == "yellow", timeout_s=15)
        row = wait_for(lambda: (r := haproxy.server())["weight"] == "50" and r)
        assert row["status"] == "UP"
        kam.clear_faults()
        wait_for(lambda: haproxy.server()["weight"] == "100", timeout_s=20)


def test_haproxy_puts_a_healthy_standby_in_maint(kam, tmp_path, haproxy_factory):
    """The VIP (a TEST-NET address no interface holds) is elsewhere: a standby, green; the
    backend must not send it anything, and must not show it DOWN either."""
    agent_port = free_port("tcp")
    probes = options_probe(kam.uri("udp", user="ping")) + (
        '[[probes]]\nname = "vip"\nkind = "vip"\naddress = "192.0.2.77"\ninterval_s = 0.3\n'
    )
    with sipwatch_run(tmp_path, probes, agent_port) as http:
        haproxy = haproxy_factory(kam.tcp_port, agent_port)
        haproxy.wait_status("MAINT")
        s = status(http)
        assert (s["verdict"], s["active"]) == ("green", False)
        assert agent_says(agent_port) == "up maint\n"


def test_hostile_agent_check_clients_do_not_stop_probing(kam, tmp_path):
    agent_port = free_port("tcp")
    with sipwatch_run(tmp_path, options_probe(kam.uri("udp", user="ping")), agent_port) as http:
        wait_for(lambda: agent_says(agent_port) == "up ready 100%\n")
        runs = status(http)["probes"]["pbx-udp"]["runs"]
        idle = [socket.create_connection(("127.0.0.1", agent_port)) for _ in range(50)]
        try:
            for s in idle[:25]:  # a flood of junk, never reading, never closing
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    s.send(b"x" * 65536)
            wait_for(lambda: status(http)["probes"]["pbx-udp"]["runs"] >= runs + 3, timeout_s=5)
            # the slow ones are dropped within a second or two; a normal client is answered
            assert wait_for(lambda: agent_says(agent_port) == "up ready 100%\n", timeout_s=5)
        finally:
            for s in idle:
                s.close()
