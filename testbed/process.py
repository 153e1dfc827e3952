"""Process and port plumbing shared by the Kamailio and sipp peers.

Owns: the rig's error family, finding the external tools, free loopback ports, the processes
of one peer (its own session / process group), stopping a peer by its PID with bounded waits,
and log tails for error messages.

Safety rules kept here: only loopback addresses (or, via testbed.netns, addresses inside
namespaces the test made); a peer is started with start_new_session=True
so its process group id equals the PID we started; signals only ever go to that PID or that
process group — never to a process found by name.

    TestbedError (RuntimeError)   a peer did not start, did not answer, a tool failed
    └── MissingToolError          kamailio / kamcmd / sipp / openssl not installed
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = [
    "LOOPBACK_HOSTS",
    "MissingToolError",
    "TestbedError",
    "check_loopback",
    "free_port",
    "group_pids",
    "log_tail",
    "port_bound",
    "require_tool",
    "stop_process",
]

LOOPBACK_HOSTS = ("127.0.0.1", "::1")
_INSTALL_HINT = "run `make test` or `.ci/run`, which install the SIP test peers"


class TestbedError(RuntimeError):
    """A test peer could not be started, configured or stopped. The message says why."""

    __test__ = False  # not a pytest test class despite the name


class MissingToolError(TestbedError):
    """An external program the rig needs is not installed."""

    __test__ = False


def require_tool(name: str) -> str:
    """Absolute path of `name` on PATH (or in /usr/sbin), else MissingToolError."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise MissingToolError(f"{name} is not installed; {_INSTALL_HINT}")
    return path


def check_loopback(host: str) -> None:
    """The rig never listens on or talks to anything but the loopback: ::1 or 127.0.0.0/8
    (a test with several "nodes" gives each a loopback address of its own, 127.0.0.2 ...)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"test peers listen on loopback only ({LOOPBACK_HOSTS}, 127.0.0.0/8), not {host!r}"
        )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(kind: str = "udp", host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing is bound to right now, for "udp", "tcp" or "both".

    The port is released before returning, so another process may take it first; callers that
    start a server on it retry on "Address already in use".
    """
    if kind not in ("udp", "tcp", "both"):
        raise ValueError(f"kind must be udp, tcp or both, not {kind!r}")
    check_loopback(host)
    first = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    for _ in range(100):
        with socket.socket(_family(host), first) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            if kind != "both":
                return port
            try:
                with socket.socket(_family(host), socket.SOCK_STREAM) as other:
                    other.bind((host, port))
            except OSError:
                continue
            return port
    raise TestbedError(f"no free {kind} port found on {host}")


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, from /proc/<pid>/stat."""
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # comm (field 2) may contain spaces and parentheses: split after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return sorted(found)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Stop a peer started with start_new_session=True: SIGTERM, then SIGKILL; idempotent.

    SIGCONT follows SIGTERM so a group a test froze with SIGSTOP can act on it. Waits (bounded)
    until the main process is reaped and no process of its group is left.
    """
    pgid = proc.pid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        _signal_group(pgid, signal.SIGCONT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
    # Children normally exit with the main process; whatever is left gets SIGKILL.
    if _wait_group_gone(pgid, timeout_s):
        return
    _signal_group(pgid, signal.SIGKILL)
    if not _wait_group_gone(pgid, timeout_s):
        raise TestbedError(f"processes {group_pids(pgid)} of group {pgid} survive SIGKILL")


def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_pids(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def port_bound(host: str, port: int, transport: str) -> bool:
    """Is host:port bound (UDP) or listening (TCP)? Read from /proc/net, touching nothing."""
    v6 = ":" in host
    # thread-self: a thread inside another network namespace (testbed.netns.run_in) sees
    # that namespace's sockets; /proc/net would show the process's (main thread's) ones.
    table = f"/proc/thread-self/net/{transport}{'6' if v6 else ''}"
    want_state = "07" if transport == "udp" else "0A"  # TCP_CLOSE for UDP sockets, TCP_LISTEN
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        local, state = fields[1], fields[3]
        _addr, _, port_hex = local.rpartition(":")
        if int(port_hex, 16) == port and state == want_state:
            return True
    return False


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, for error messages ("" if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
