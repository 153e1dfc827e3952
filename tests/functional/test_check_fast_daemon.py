"""`sipwatch check` with a real daemon running: the fast path (GET /check, rendered by the
daemon with check's own code) prints exactly what the answer from /status renders to, exits
the same, loads none of the heavy modules, and trusts nothing but a daemon of this very
config file."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_daemon
from test_daemon import SIPWATCH, running, wait_for

from testbed import free_port

pytestmark = pytest.mark.peers

POLICY = """
startup_grace_s = 0.0
[defaults]
fall = 1
rise = 1
[kinds.sip_options]
role = "critical"
"""


def get(port: int, path: str) -> tuple[int, str]:
    """test_daemon.get, and (0, "") while nothing answers yet."""
    try:
        return test_daemon.get(port, path)
    except OSError:
        return 0, ""


@pytest.fixture
def daemon(kam, tmp_path) -> Iterator[tuple[int, Path]]:
    """A daemon with a green and a red probe that run once a minute: their results stay put
    while the test compares outputs."""
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    closed = free_port("udp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]  # the HTTP side\nhttp_port = {port}\n'
        f'[[probes]]\nname = "up"\nkind = "sip_options"\nuri = "{kam.uri("udp", user="p")}"\n'
        "interval_s = 60.0\ntimeout_s = 1.0\n"
        f'[[probes]]\nname = "down"\nkind = "sip_options"\nuri = "sip:127.0.0.1:{closed}"\n'
        "interval_s = 60.0\ntimeout_s = 1.0\n"
    )
    with running(cfg, tmp_path / "daemon.log"):
        wait_for(lambda: get(port, "/check")[0] == 200)
        yield port, cfg


def check(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIPWATCH, "check", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_fast_path_prints_what_the_status_answer_renders_to(daemon):
    from sipwatch.commands.check import RENDERERS, _health_from_status, exit_code
    from sipwatch.status_client import get_status

    port, cfg = daemon
    status = get_status("127.0.0.1", port)
    health = _health_from_status(status, {"up", "down"})
    assert health is not None
    code = exit_code(health.decision, health.results)
    assert code == 1  # the closed port is critical: red
    for fmt in RENDERERS:
        done = check(cfg, "--format", fmt)
        assert (done.returncode, done.stderr) == (code, "")
        assert done.stdout == RENDERERS[fmt](health, code, Path(status["policy"])) + "\n"
    assert json.loads(check(cfg, "--json").stdout)["source"] == "daemon"


HEAVY = (
    "argparse", "typing", "tomllib", "hashlib", "json", "socket", "re", "enum",
    "dataclasses", "pathlib", "pydantic", "sipwatch.config", "sipwatch.model",
)  # fmt: skip
_IMPORTS = """
import sys
from sipwatch.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m in HEAVY)
print(code, heavy, file=sys.stderr)
"""


def test_the_fast_path_loads_no_heavy_module(daemon):
    """Up to three tries: on a machine this busy the daemon may miss check's 0.5 s read
    deadline once, and check then (rightly) goes the full way."""
    _, cfg = daemon
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    seen = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{_IMPORTS}", "check", "--config",
             str(cfg), "--format", "shell"],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert "source=daemon" in done.stdout, done.stderr
        seen.append(done.stderr.strip())
        if seen[-1] == "1 []":
            return
    raise AssertionError(f"heavy modules loaded: {seen}")


def test_the_other_command_lines_still_get_the_daemons_answer(daemon):
    """The argparse path (an abbreviated option here) asks the same endpoint."""
    port, cfg = daemon
    fast = check(cfg, "--format", "shell")
    slow = subprocess.run(
        [SIPWATCH, "check", "--conf", str(cfg), "--form", "shell"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (slow.returncode, slow.stdout) == (fast.returncode, fast.stdout)
    assert get(port, "/check?format=nagios")[0] == 400


class OneAnswer:
    """A socket server answering every GET with `head` + `body` (a daemon of another config,
    or not a daemon at all)."""

    def __init__(self, head: bytes, body: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.answer = head + b"\r\n" + body
        self.paths: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                self.paths.append(conn.recv(65536).split(b" ")[1])
                conn.sendall(self.answer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.close()


@pytest.mark.parametrize(
    ("sha", "code", "used"),
    [("this", b"0", True), ("other", b"0", False), ("this", b"6", False), ("this", b"", False)],
    ids=["this config", "another config", "exit 6", "no exit code"],
)
def test_only_a_daemon_of_this_config_is_trusted(tmp_path, sha, code, used):
    from sipwatch.check_fast import sha256_hex

    fake = OneAnswer(b"", b"")
    try:
        cfg = tmp_path / "sipwatch.toml"
        cfg.write_text(f"[daemon]\nhttp_port = {fake.port}\n")
        digest = sha256_hex(cfg.read_bytes()) if sha == "this" else "0" * 64
        fake.answer = (
            b"HTTP/1.0 200 OK\r\nX-Sipwatch-Config-Sha256: " + digest.encode()
            + (b"\r\nX-Sipwatch-Exit-Code: " + code if code else b"")
            + b"\r\n\r\nGREEN from the fake\n"
        )  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from sipwatch.check_fast import "
             "answer_from_daemon as a; print(a(sys.argv[1], 'text'), file=sys.stderr)", str(cfg)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert fake.paths == [b"/check?format=text"]
        if used:
            assert (done.stdout, done.stderr.strip()) == ("GREEN from the fake\n", "0")
        else:
            assert (done.stdout, done.stderr.strip()) == ("", "None")
    finally:
        fake.close()
