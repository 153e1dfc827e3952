"""A real keepalived VRRP pair in two network namespaces joined by a veth pair (test rig,
root only): used by tests/functional/test_keepalived.py and bench/keepalived.py.

    with vrrp_pair(workdir, check=...) as pair:   namespaces, keepalived A (priority 150)
        pair.holders()                              and B (100), VIP 10.213.N.100 on A
        pair.wait_holder("B", timeout_s=10)

`check` is what each node's keepalived tracks: "track_file" (a `track_file` block with
`weight 0` on node X's file `pair.track_file(X)`) or "vrrp_script" (deploy/keepalived/
sipwatch-vrrp-check on `pair.verdict_file(X)`, every 0.2 s, fall 1). Everything this starts
is stopped by PID, and only the namespaces it created are deleted; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testbed.netns import Netns, require_root, veth

REPO = Path(__file__).resolve().parents[2]
VRRP_CHECK = REPO / "deploy" / "keepalived" / "sipwatch-vrrp-check"
PRIORITY = {"A": 150, "B": 100}


def why_not() -> str:
    """Why a pair cannot be made here ("" when it can)."""
    reason = require_root()
    if reason:
        return reason
    if shutil.which("keepalived") is None and not os.path.exists("/usr/sbin/keepalived"):
        return "keepalived is not installed (apt-get install -y keepalived)"
    return ""


def _conf(name: str, workdir: Path, check: str, vip: str, vrid: int) -> str:
    if check == "track_file":
        tracker = f'track_file sipwatch {{\n  file "{workdir / f"{name}.track"}"\n  weight 0\n}}\n'
        use = "  track_file {\n    sipwatch\n  }\n"
    else:
        tracker = (
            "vrrp_script sipwatch {\n"
            f'  script "{VRRP_CHECK} {workdir / f"{name}.verdict"} 5"\n'
            "  interval 0.2\n  timeout 1\n  fall 1\n  rise 1\n}\n"
        )
        use = "  track_script {\n    sipwatch\n  }\n"
    return (
        f"global_defs {{\n  router_id sipwatch-test-{name}\n  script_user root\n"
        "  enable_script_security\n}\n"
        f"{tracker}"
        "vrrp_instance VI {\n  state BACKUP\n  interface veth0\n"
        f"  virtual_router_id {vrid}\n  priority {PRIORITY[name]}\n  advert_int 1\n"
        f"{use}"
        f"  virtual_ipaddress {{\n    {vip}/24 dev veth0\n  }}\n}}\n"
    )


@dataclass
class VrrpPair:
    workdir: Path
    vip: str
    ns: dict[str, Netns] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def track_file(self, name: str) -> Path:
        return self.workdir / f"{name}.track"

    def verdict_file(self, name: str) -> Path:
        return self.workdir / f"{name}.verdict"

    def holds(self, name: str) -> bool:
        out = self.ns[name].ip("-br", "addr", "show", "dev", "veth0", check=False)
        return f" {self.vip}/" in f" {out}"

    def holders(self) -> list[str]:
        return [n for n in self.ns if self.holds(n)]

    def wait_holder(self, name: str, *, timeout_s: float, step_s: float = 0.005) -> float:
        """Seconds until `name` alone holds the VIP; AssertionError after timeout_s."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.holders() == [name]:
                return time.monotonic() - started
            time.sleep(step_s)
        raise AssertionError(
            f"VIP not on {name} alone within {timeout_s} s (holders {self.holders()});\n"
            + "\n".join(self.log_tail(n) for n in self.ns)
        )

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return f"({name}: no log)"
        return f"--- keepalived {name}:\n" + "\n".join(text.splitlines()[-lines:])


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)  # the parent stops its VRRP child, then exits
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def vrrp_pair(workdir: Path, *, check: str = "track_file", subnet: int = 213) -> Iterator[VrrpPair]:
    """Bring the pair up with node A holding the VIP (both checks healthy); tear it down."""
    if check not in ("track_file", "vrrp_script"):
        raise ValueError(f"check must be track_file or vrrp_script, not {check!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    pair = VrrpPair(workdir, vip=f"10.{subnet}.0.100")
    # A virtual router id of our own per run: two pairs on one machine never see each other
    # (separate namespaces anyway), and leftovers are told apart in captures.
    vrid = 1 + os.getpid() % 250
    try:
        for name in PRIORITY:
            pair.ns[name] = Netns.create(f"ka{name}")
        veth(pair.ns["A"], "veth0", pair.ns["B"], "veth0")
        for i, name in enumerate(PRIORITY, start=1):
            pair.ns[name].add_address(f"10.{subnet}.0.{i}/24", "veth0")
        for name in PRIORITY:
            if check == "track_file":
                write_atomically(pair.track_file(name), "0\n")
            conf = workdir / f"{name}.conf"
            conf.write_text(_conf(name, workdir, check, pair.vip, vrid))
            argv = [
                shutil.which("keepalived") or "/usr/sbin/keepalived",
                "-n",  # foreground: no systemd here
                "-l",  # log to the console (our log file)
                "-D",  # detailed logs
                "-P",  # VRRP only
                "-f",
                str(conf),
                "-p",
                str(workdir / f"{name}.pid"),
                "-r",
                str(workdir / f"{name}.vrrp.pid"),
            ]
            with (workdir / f"{name}.log").open("wb") as log:
                pair.procs[name] = subprocess.Popen(
                    pair.ns[name].exec_argv(argv), stdout=log, stderr=subprocess.STDOUT
                )
        yield pair
    finally:
        for proc in pair.procs.values():
            _stop(proc)
        for netns in pair.ns.values():
            netns.delete()
