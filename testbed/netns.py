"""Network namespaces for tests that need addresses other than the loopback (a VIP, an IVR
server behind the PBX): created by the test, used only by it, removed by it.

Owns: creating uniquely named namespaces (prefix "swt" + our PID + a counter, so parallel
test runs never collide and leftovers are attributable), veth links between them, addresses,
running `ip` with a timeout, and running Python code *inside* a namespace from a dedicated
thread (`run_in`: setns(2) switches only the calling thread, so the rest of the test process
stays where it was; a fresh thread per call, never a pool thread, so no thread is left inside).

Safety: only namespaces this module created are ever deleted (`Netns.delete` by name, and
`cleanup` only names from its own list); every `ip` call has a timeout; every wait is bounded.

    require_root() -> str          "" when namespaces can be made, else the reason (for skip)
    Netns.create(tag) -> Netns     `ip netns add`, loopback up
    ns.ip(*args)                   `ip -n NAME args...`
    veth(a, if_a, b, if_b)         a veth pair with one end in each namespace, both up
    run_in(ns, fn, *args)          fn(*args) in a thread inside the namespace
    enter(ns)                      the calling thread (one of its own) into the namespace
    run_async_in(ns, factory)      asyncio.run(factory()) in such a thread
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import subprocess
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from testbed.process import TestbedError, require_tool

__all__ = ["Netns", "enter", "require_root", "run_async_in", "run_in", "veth"]

T = TypeVar("T")
PREFIX = "swt"
CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)
_IP_TIMEOUT_S = 10.0


def require_root() -> str:
    """Why namespaces cannot be made here ("" if they can)."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add, setns)"
    try:
        require_tool("ip")
    except TestbedError as exc:
        return str(exc)
    if not os.path.isdir("/proc/self/ns") or not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return ""


def _ip(*args: str, timeout_s: float = _IP_TIMEOUT_S, check: bool = True) -> str:
    argv = [require_tool("ip"), *args]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"ip {' '.join(args)} timed out after {timeout_s} s") from exc
    if check and done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise TestbedError(f"ip {' '.join(args)} failed (rc={done.returncode}): {err}")
    return done.stdout.decode(errors="replace")


@dataclass
class Netns:
    """A namespace this process created. `delete()` removes it (idempotent)."""

    name: str
    deleted: bool = False

    @classmethod
    def create(cls, tag: str) -> Netns:
        if not tag.isalnum() or len(tag) > 8:
            raise ValueError("tag must be alphanumeric, at most 8 characters")
        name = f"{PREFIX}{os.getpid()}{tag}{next(_counter)}"
        _ip("netns", "add", name)
        ns = cls(name)
        try:
            ns.ip("link", "set", "lo", "up")
        except BaseException:
            ns.delete()
            raise
        return ns

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def ip(self, *args: str, check: bool = True) -> str:
        """`ip -n NAME ARGS...` with a timeout; TestbedError on failure when `check`."""
        return _ip("-n", self.name, *args, check=check)

    def exec_argv(self, argv: list[str]) -> list[str]:
        """argv run inside the namespace with `ip netns exec` (which execs in place: the
        PID Popen returns is the command's own)."""
        return [require_tool("ip"), "netns", "exec", self.name, *argv]

    def add_address(self, address: str, device: str) -> None:
        self.ip("addr", "add", address, "dev", device)

    def del_address(self, address: str, device: str) -> None:
        self.ip("addr", "del", address, "dev", device)

    def link(self, device: str, state: str) -> None:
        self.ip("link", "set", device, state)

    def delete(self) -> None:
        if self.deleted:
            return
        # Processes still inside keep the namespace alive after the name is gone; callers
        # stop their processes (by PID) first. The name is ours: only it is removed.
        _ip("netns", "del", self.name, check=False)
        self.deleted = True

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.delete()


def veth(a: Netns, if_a: str, b: Netns, if_b: str) -> None:
    """A veth pair: `if_a` inside `a`, `if_b` inside `b`, both up. Deleted with either
    namespace."""
    a.ip("link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", b.name)
    a.link(if_a, "up")
    b.link(if_b, "up")


def enter(ns: Netns) -> None:
    """Move the calling thread into `ns` (setns(2) switches only this thread): for a thread
    of its own that lives there (testbed.calls); `run_in` for one call."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise TestbedError(f"setns into {ns.name} failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(ns: Netns, fn: Callable[..., T], *args: Any, timeout_s: float = 60.0) -> T:
    """Call fn(*args) in a new thread that has entered `ns`; return its result or raise its
    exception. Threads it starts (asyncio's executor) inherit the namespace."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            enter(ns)
            box["value"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{ns.name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TestbedError(f"code inside {ns.name} did not finish within {timeout_s} s")
    if "error" in box:
        raise box["error"]
    result: T = box["value"]
    return result


def run_async_in(
    ns: Netns, factory: Callable[[], Coroutine[Any, Any, T]], *, timeout_s: float = 60.0
) -> T:
    """asyncio.run(factory()) inside `ns` (a fresh event loop in a fresh thread)."""
    return run_in(ns, lambda: asyncio.run(factory()), timeout_s=timeout_s)


def cleanup(namespaces: list[Netns]) -> None:
    """Delete the given namespaces (ours), ignoring ones already gone."""
    for ns in namespaces:
        with contextlib.suppress(TestbedError):
            ns.delete()
