"""The lab's power controller (testbed/power.py) and its fence agent (testbed/fence/fence_swlab)
without the lab: the controller on loopback, its outlets real child processes (off: SIGKILL by
PID; on: a new process), the agent run as Pacemaker runs it (options on stdin) and as a person
does (command line). Exit codes as fence-agents: 0 ok / on, 1 error, 2 off."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from testbed.power import PROTOCOL, PowerController, sign

AGENT = Path(__file__).resolve().parents[2] / "testbed" / "fence" / "fence_swlab"
SECRET = b"lab-power-secret-123"


class Sleepers:
    """Outlets whose "nodes" are `sleep` processes: off kills one by PID, boot starts another."""

    def __init__(self, names: Sequence[str]) -> None:
        self.procs: dict[str, subprocess.Popen[bytes] | None] = {
            n: subprocess.Popen(["sleep", "600"]) for n in names
        }
        self.boots: list[str] = []

    def outlet_names(self) -> Sequence[str]:
        return list(self.procs)

    def outlet_on(self, name: str) -> bool:
        proc = self.procs[name]
        return proc is not None and proc.poll() is None

    def outlet_off(self, name: str) -> None:
        proc = self.procs[name]
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        self.procs[name] = None

    def outlet_boot(self, name: str) -> None:
        time.sleep(0.3)  # a boot takes a while; status says "on" meanwhile
        self.procs[name] = subprocess.Popen(["sleep", "600"])
        self.boots.append(name)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def pdu(tmp_path: Path) -> Iterator[tuple[PowerController, Sleepers, Path]]:
    outlets = Sleepers(["n1", "n2", "n3"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    ctl = PowerController(sock, SECRET, outlets, log_path=tmp_path / "power.jsonl")
    ctl.start()
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    try:
        yield ctl, outlets, secret
    finally:
        ctl.stop()
        outlets.kill_all()


def agent(*args: str, stdin: str = "", timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(AGENT), *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout_s, check=False)  # fmt: skip


def stdin_opts(ctl: PowerController, secret: Path, **kw: str) -> str:
    host, port = ctl.address
    opts = {"ip": host, "ipport": str(port), "secret_file": str(secret), **kw}
    return "".join(f"{k}={v}\n" for k, v in opts.items())


def test_status_off_on_reboot_from_stdin(pdu: tuple[PowerController, Sleepers, Path]) -> None:
    ctl, outlets, secret = pdu
    first = outlets.procs["n2"]
    assert first is not None
    done = agent(stdin=stdin_opts(ctl, secret, action="status", port="n2"))
    assert (done.returncode, done.stdout.strip()) == (0, "Status: ON"), done.stderr
    done = agent(stdin=stdin_opts(ctl, secret, action="off", plug="n2"))
    assert done.returncode == 0, done.stderr
    assert first.poll() is not None  # killed by PID: off returned only once it was gone
    done = agent(stdin=stdin_opts(ctl, secret, action="status", plug="n2"))
    assert (done.returncode, done.stdout.strip()) == (2, "Status: OFF")
    assert outlets.procs["n1"] is not None and outlets.procs["n1"].poll() is None  # others on
    done = agent(stdin=stdin_opts(ctl, secret, action="on", plug="n2"))
    assert done.returncode == 0, done.stderr
    _wait(lambda: outlets.boots == ["n2"], 5)
    second = outlets.procs["n2"]
    done = agent(stdin=stdin_opts(ctl, secret, action="reboot", plug="n2"))
    assert done.returncode == 0, done.stderr
    _wait(lambda: outlets.boots == ["n2", "n2"], 5)
    assert second is not None and second.poll() is not None
    assert [e.command for e in ctl.events_for("n2")] == ["off", "on", "boot", "off", "on", "boot"]
    assert all(e.result == "ok" for e in ctl.events)
    assert "lab-power-secret" not in (secret.parent / "power.jsonl").read_text()


def test_command_line_list_and_monitor(pdu: tuple[PowerController, Sleepers, Path]) -> None:
    ctl, outlets, secret = pdu
    host, port = ctl.address
    common = ["-a", host, "-u", str(port), "--secret-file", str(secret)]
    outlets.outlet_off("n3")
    done = agent("-o", "list-status", *common)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n1,n1,on", "n2,n2,on", "n3,n3,off"]
    assert agent("-o", "monitor", *common).returncode == 0
    assert agent("-o", "status", "-n", "n3", *common).returncode == 2
    assert agent("--action=status", "--plug=n1", *common).returncode == 0
    assert agent("-o", "validate-all", "-n", "n1", *common).returncode == 0


def test_wrong_secret_is_refused_and_nothing_is_switched(
    pdu: tuple[PowerController, Sleepers, Path], tmp_path: Path
) -> None:
    ctl, outlets, _ = pdu
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-secret\n")
    done = agent(stdin=stdin_opts(ctl, wrong, action="off", plug="n1"))
    assert done.returncode == 1
    assert "authentication failed" in done.stderr
    assert outlets.outlet_on("n1")
    assert [(e.command, e.result) for e in ctl.events] == [("off", "denied")]


def test_a_replayed_request_is_refused(pdu: tuple[PowerController, Sleepers, Path]) -> None:
    """The MAC covers the server's nonce: a request captured from one exchange is refused in
    the next (the nonce is fresh per connection)."""
    ctl, outlets, _ = pdu

    def exchange(line: str | None) -> tuple[str, str]:
        with socket.create_connection(ctl.address, timeout=5) as s:
            f = s.makefile("rwb")
            nonce = f.readline().decode().split()[2]
            f.write(((line or f"{sign(SECRET, nonce, 'off n1')} off n1") + "\n").encode())
            f.flush()
            return nonce, f.readline().decode().strip()

    ok_nonce, _ = exchange(None)  # a legitimate off; n1 is off now
    assert not outlets.outlet_on("n1")
    replay = f"{sign(SECRET, ok_nonce, 'off n2')} off n2"  # MAC over a past nonce
    _, reply = exchange(replay)
    assert reply == "ERR authentication failed"
    assert outlets.outlet_on("n2")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("", "ERR empty request"),
        ("x" * 600, "ERR request line too long"),
        ("\xff\xfe off n1", "ERR request is not ASCII"),
    ],
)
def test_malformed_requests_get_an_error_line(
    pdu: tuple[PowerController, Sleepers, Path], line: str, error: str
) -> None:
    ctl, outlets, _ = pdu
    with socket.create_connection(ctl.address, timeout=5) as s:
        f = s.makefile("rwb")
        hello = f.readline().decode()
        assert hello.startswith(PROTOCOL + " ")
        f.write(line.encode("latin-1") + b"\n")
        f.flush()
        assert f.readline().decode().strip() == error
    assert all(outlets.outlet_on(n) for n in ("n1", "n2", "n3"))


def test_unknown_node_and_command(pdu: tuple[PowerController, Sleepers, Path]) -> None:
    ctl, _, secret = pdu
    done = agent(stdin=stdin_opts(ctl, secret, action="off", plug="n9"))
    assert done.returncode == 1 and "unknown node" in done.stderr


def test_unreachable_controller_fails_within_the_timeout(tmp_path: Path) -> None:
    """A controller that accepts the connection but never speaks (a listening socket nobody
    serves) and one that refuses: both exit 1, the first within power_timeout."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        port = mute.getsockname()[1]
        started = time.monotonic()
        done = agent(stdin=f"action=off\nplug=n1\nip=127.0.0.1\nipport={port}\n"
                     f"secret_file={secret}\npower_timeout=2\n")  # fmt: skip
        took = time.monotonic() - started
    assert done.returncode == 1, done
    assert "timed out" in done.stderr
    assert took < 6, took
    done = agent(stdin=f"action=status\nplug=n1\nip=127.0.0.1\nipport={port}\n"
                 f"secret_file={secret}\n")  # fmt: skip
    assert done.returncode == 1 and "cannot reach" in done.stderr


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        ("action=off\nip=127.0.0.1\n", "needs plug"),
        ("action=fly\nplug=n1\nip=127.0.0.1\n", "unknown action"),
        ("action=off\nplug=n1\n", "missing ip"),
        ("action=off\nplug=n1\nip=127.0.0.1\nipport=x\n", "must be numbers"),
        ("action=off\nplug=n1\nip=127.0.0.1\nsecret_file=/nonexistent\n", "secret_file"),
    ],
)
def test_bad_options_exit_1_with_a_clear_error(stdin: str, error: str) -> None:
    done = agent(stdin=stdin)
    assert done.returncode == 1
    assert error in done.stderr
    assert "Traceback" not in done.stderr


def test_metadata_is_fence_agents_metadata(tmp_path: Path) -> None:
    """Well-formed (xmllint) and of fence-agents' shape: resource-agent name/shortdesc,
    longdesc, vendor-url, every parameter with unique/required, a getopt, a content type and
    a shortdesc; the actions Pacemaker needs."""
    done = agent("-o", "metadata")
    assert done.returncode == 0
    xml = tmp_path / "meta.xml"
    xml.write_text(done.stdout)
    if shutil.which("xmllint"):
        lint = subprocess.run(["xmllint", "--noout", str(xml)], capture_output=True, text=True,
                              timeout=10, check=False)  # fmt: skip
        assert lint.returncode == 0, lint.stderr
    root = ET.fromstring(done.stdout)
    assert root.tag == "resource-agent" and root.get("name") == "fence_swlab"
    assert root.get("shortdesc")
    assert [c.tag for c in root] == ["longdesc", "vendor-url", "parameters", "actions"]
    params = root.findall("parameters/parameter")
    assert {"action", "ip", "ipport", "plug"} <= {p.get("name") for p in params}
    for p in params:
        assert p.get("unique") in ("0", "1") and p.get("required") in ("0", "1")
        assert [c.tag for c in p] == ["getopt", "content", "shortdesc"], p.get("name")
        assert p.find("getopt").get("mixed")  # type: ignore[union-attr]
        content = p.find("content")
        assert content is not None
        assert content.get("type") in ("boolean", "string", "second", "integer")
        assert p.find("shortdesc").get("lang") == "en"  # type: ignore[union-attr]
    actions = {a.get("name") for a in root.findall("actions/action")}
    assert {"on", "off", "reboot", "status", "list", "monitor", "metadata",
            "validate-all"} <= actions  # fmt: skip


def test_agent_is_executable() -> None:
    assert os.access(AGENT, os.X_OK)


def _wait(ok: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
