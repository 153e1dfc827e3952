"""Secrets never leave the process that needs them (issue 17 §4).

One known password is the digest password of a real Kamailio registrar (REGISTER with qop)
and the HTTP basic-auth password of the daemon. Every command runs with it and every
endpoint is asked with it; then everything an operator, a log shipper, a hook or another
user of the host can read is collected and searched for the password, the basic-auth
header value and every digest `response=` that went over the wire (a UDP relay between
sipwatch and Kamailio records them). Zero hits. Each source must have come back non-empty,
so the test cannot pass by reading nothing. The daemon must run with core dumps off: a core
of the process would hold the password.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import bcrypt
import pytest
import test_daemon
from test_daemon import SIPWATCH, running

from testbed import free_port
from testbed.pacemaker import FileCluster

pytestmark = pytest.mark.peers
#: The `monitor` user's password in the session Kamailio (tests/conftest.py USERS); a real
#: REGISTER below proves it is the right one.
PASSWORD = "monitor-secret-1"
HTTP_USER = "ops"
ENV_VAR = "SIPWATCH_SECRET_PW"
POLICY = """
startup_grace_s = 0.0
[defaults]
fall = 1
rise = 1
[kinds.sip_options]
role = "critical"
[kinds.sip_register]
role = "minor"
"""


#: Polled often: the hooks the daemon runs are short-lived, `sample()` must catch them.
wait_for = partial(test_daemon.wait_for, timeout_s=15.0, step=0.05)


class Relay:
    """A UDP relay to Kamailio, one upstream socket per client address (so several clients
    share it): records every datagram, for the digest responses sent in the clear."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self._up: dict[tuple[str, int], socket.socket] = {}
        self._client_of: dict[socket.socket, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data, addr = sock.recvfrom(65535)
                self.seen.append(data)
                if sock is self.sock:
                    up = self._up.get(addr)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.bind(("127.0.0.1", 0))
                        self._up[addr] = up
                        self._client_of[up] = addr
                        self._sel.register(up, selectors.EVENT_READ)
                    up.sendto(data, self.upstream)
                else:
                    self.sock.sendto(data, self._client_of[sock])

    def responses(self) -> set[str]:
        """Every digest `response=` value sent (RFC 2617 §3.2.2)."""
        found: set[str] = set()
        for data in self.seen:
            found.update(re.findall(rb'response="?([0-9a-fA-F]{32,64})', data))
        return {v.decode() for v in found}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in (self.sock, *self._up.values()):
            sock.close()


@pytest.fixture
def relay(kam) -> Iterator[Relay]:
    port = int(kam.uri("udp").rsplit(":", 1)[1])
    r = Relay((kam.host, port))
    try:
        yield r
    finally:
        r.close()


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it now (the children lists of /proc, bounded)."""
    found, todo = [], [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def cores_allowed() -> None:
    """Started as a service manager may start it (systemd's LimitCORE=infinity): the daemon
    itself must turn core dumps off."""
    limit = resource.getrlimit(resource.RLIMIT_CORE)[1]
    resource.setrlimit(resource.RLIMIT_CORE, (limit, limit))


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def get(port: int, path: str, auth: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    req.add_header("Authorization", auth)
    with urllib.request.urlopen(req, timeout=5) as answer:
        return str(answer.read().decode())


def oneshot(argv: list[str], env: dict[str, str], seen: dict[str, str]) -> str:
    """Run a one-shot command to the end; record its argv as /proc shows it; its output."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    seen[f"cmdline of {argv[1]} (pid {proc.pid})"] = cmdline(proc.pid) or " ".join(argv)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return f"$ {' '.join(argv)} (rc {proc.returncode})\n{out}"


def test_no_secret_reaches_anything_readable(kam, relay: Relay, tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o600)
    users = tmp_path / "users"
    users.write_text(
        f"{HTTP_USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n"
    )
    users.chmod(0o600)
    basic = "Basic " + base64.b64encode(f"{HTTP_USER}:{PASSWORD}".encode()).decode()
    cluster = FileCluster.build(tmp_path / "cib.xml")
    hook_out = tmp_path / "hooks"
    hook_out.mkdir()
    hook = tmp_path / "hook.sh"
    hook.write_text(
        f'#!/bin/sh\nenv > "{hook_out}/env.$$"\n'
        f'tr "\\0" " " < /proc/$$/cmdline > "{hook_out}/cmdline.$$"\n'
    )
    hook.chmod(0o755)
    via_relay = f"sip:monitor@127.0.0.1:{relay.port}"
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\nlog_level = "debug"\n'
        f'[daemon]\nhttp_port = {port}\nverdict_file = "{tmp_path / "verdict"}"\n'
        f'http_users_file = "{users}"\nhttp_open_paths = []\n'
        f'[cluster]\nagent = "health_attribute"\ndry_run = false\nnode = "n1"\n'
        f'cib_file = "{cluster.path}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        f'freeze_file = "{tmp_path / "freeze"}"\n'
        f'[[probes]]\nname = "reg-file"\nkind = "sip_register"\nuri = "{via_relay}"\n'
        f'password_file = "{pwfile}"\ninterval_s = 0.5\ntimeout_s = 3\n'
        f'[[probes]]\nname = "reg-env"\nkind = "sip_register"\nuri = "{via_relay}"\n'
        f'password_env = "{ENV_VAR}"\ninterval_s = 0.5\ntimeout_s = 3\n'
        f'[[probes]]\nname = "opt"\nkind = "sip_options"\nuri = "{kam.uri("udp", user="ping")}"\n'
        f"interval_s = 0.3\ntimeout_s = 0.25\n"
        f'[[hooks]]\nargv = ["{hook}", "--verdict-changed"]\ntimeout_s = 5\n'
    )
    env = {**os.environ, ENV_VAR: PASSWORD}
    seen: dict[str, str] = {}  # source -> what it gave
    log = tmp_path / "daemon.log"
    with running(cfg, log, env=env, preexec_fn=cores_allowed) as daemon:
        status: dict[str, dict[str, dict[str, object]]] = {}

        def registered() -> bool:
            nonlocal status
            assert daemon.poll() is None, log.read_text()
            with contextlib.suppress(OSError):
                status = json.loads(get(port, "/status", basic))
            probes = status.get("probes", {})
            return all(
                int(str(probes.get(n, {}).get("runs", 0))) >= 2 for n in ("reg-file", "reg-env")
            )

        wait_for(registered)
        for name in ("reg-file", "reg-env"):  # the password is the right one
            last = status["probes"][name]["last"]
            assert isinstance(last, dict) and last["outcome"] == "ok", last
        limits = Path(f"/proc/{daemon.pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core"))
        assert core.split()[4:6] == ["0", "0"], f"core dumps are on in the daemon: {core}"
        # A verdict change each way: the hook runs, the agent writes the attribute (audit).
        procs: dict[int, str] = {}

        def sample() -> None:
            for pid in descendants(daemon.pid):
                procs.setdefault(pid, cmdline(pid))

        kam.set_fault("OPTIONS", drop=True)
        wait_for(lambda: sample() or len(list(hook_out.glob("env.*"))) >= 1)
        kam.clear_faults()
        wait_for(lambda: sample() or len(list(hook_out.glob("env.*"))) >= 2)
        wait_for(lambda: json.loads(get(port, "/status", basic)).get("verdict") == "green")
        for path in ("/status", "/metrics", "/", "/livez", "/readyz", "/active"):
            with contextlib.suppress(urllib.error.HTTPError):  # /readyz, /active: 503 is fine
                seen[f"GET {path}"] = get(port, path, basic)
        for name in ("reg-file", "reg-env", "opt"):
            seen[f"GET /probes/{name}/trace"] = get(port, f"/probes/{name}/trace", basic)
        seen["ps: daemon and its children"] = "\n".join(procs.values())
        # One-shot commands, the same password, beside the running daemon.
        shots = [
            [SIPWATCH, "probe", via_relay, "--method", "REGISTER", "--password-file", str(pwfile)],
            [SIPWATCH, "probe", via_relay, "--method", "REGISTER", "--password-env", ENV_VAR],
            [
                SIPWATCH,
                "probe",
                via_relay,
                "--method",
                "REGISTER",
                "--password-file",
                str(pwfile),
                "--json",
            ],
            [SIPWATCH, "probe", "--config", str(cfg), "--json"],
            [SIPWATCH, "config", str(cfg)],
            [SIPWATCH, "check", "--config", str(cfg)],
        ]
        seen["one-shot output"] = "\n".join(oneshot(argv, env, seen) for argv in shots)
        # Exception paths: a wrong password (401 after the challenge), a password file that
        # is a directory.
        wrong = tmp_path / "wrong"
        wrong.write_text("not-" + PASSWORD + "\n")
        seen["error output"] = "\n".join(
            oneshot(argv, env, seen)
            for argv in (
                [
                    SIPWATCH,
                    "probe",
                    via_relay,
                    "--method",
                    "REGISTER",
                    "--password-file",
                    str(wrong),
                ],
                [
                    SIPWATCH,
                    "probe",
                    via_relay,
                    "--method",
                    "REGISTER",
                    "--password-file",
                    str(tmp_path),
                ],
            )
        )
        seen["verdict file"] = (tmp_path / "verdict").read_text()  # removed at exit
        daemon.send_signal(2)
        daemon.wait(15)
    seen["daemon log"] = log.read_text()
    seen["audit log"] = (tmp_path / "audit.jsonl").read_text()
    seen["hook environment"] = "\n".join(p.read_text() for p in hook_out.glob("env.*"))
    seen["hook cmdline"] = "\n".join(p.read_text() for p in hook_out.glob("cmdline.*"))
    seen["CIB"] = cluster.path.read_text()

    responses = relay.responses()
    assert len(responses) >= 4, "the relay saw too few digest responses: nothing to look for"
    needles = {PASSWORD, basic.split()[1], *responses}
    empty = [name for name, text in seen.items() if not text.strip()]
    assert not empty, f"sources that gave nothing (the harness would prove nothing): {empty}"
    assert "sipwatch_probe_outcomes_total" in seen["GET /metrics"]
    assert '"action"' in seen["audit log"]
    assert "SIPWATCH_NEW_VERDICT" in seen["hook environment"]
    hits = [(name, n[:6] + "...") for name, text in seen.items() for n in needles if n in text]
    assert hits == [], f"secrets found in: {hits}"
