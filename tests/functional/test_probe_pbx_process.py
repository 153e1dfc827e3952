"""`pbx_process` against real processes: a small process tree of our own (a shell in its own
session with two `sleep` children) and a real Kamailio. Frozen with SIGSTOP, resumed with
SIGCONT, killed with SIGKILL, restarted: each state must be reported as what it is.

Every process here is started by this module and stopped by its PID / process group.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes import run_probe
from sipwatch.probes._memory import ProbeMemory
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.pbx_process import PbxProcessSpec
from testbed import KamailioPeer, MissingToolError, start_kamailio


class Tree:
    """`sh -c 'sleep & sleep & wait' MARKER` in its own session; pidfile written by us."""

    def __init__(self, pidfile: Path, marker: str) -> None:
        self.proc = subprocess.Popen(
            ["sh", "-c", "sleep 30 & sleep 30 & wait", marker],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        pidfile.write_text(f"{self.pid}\n")
        wait_for(lambda: len(_group(self.pid)) == 3, "the two sleep children")

    def children(self) -> list[int]:
        return [p for p in _group(self.pid) if p != self.pid]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGCONT)
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _group(pgid: int) -> list[int]:
    from testbed.process import group_pids

    return group_pids(pgid)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2]


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s: {what}")
        time.sleep(0.01)


@pytest.fixture
def marker() -> str:
    return f"sipwatch-test-pbx-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def trees(tmp_path: Path, marker: str) -> Iterator[Callable[[], Tree]]:
    started: list[Tree] = []

    def start() -> Tree:
        tree = Tree(tmp_path / "pbx.pid", marker)
        started.append(tree)
        return tree

    try:
        yield start
    finally:
        for tree in started:
            tree.kill()


async def check(spec: PbxProcessSpec, ctx: ProbeContext | None = None) -> ProbeResult:
    return await run_probe(spec, ctx or ProbeContext())


async def test_running_tree_found_by_pidfile(trees, tmp_path) -> None:
    tree = trees()
    spec = PbxProcessSpec(pidfile=str(tmp_path / "pbx.pid"))
    ctx = ProbeContext()
    r = await check(spec, ctx)
    assert (r.outcome, r.blocks_takeover, r.scope) == (Outcome.OK, False, "node"), r
    e = r.extra
    assert (e["running"], e["pid"], e["found_by"], e["processes"]) == (True, tree.pid, "pidfile", 3)
    assert sorted(e["pids"]) == sorted([tree.pid, *tree.children()])
    assert e["rss_bytes"] > 0 and e["open_fds"] >= 3 and e["threads"] == 3
    assert 0 <= e["uptime_s"] < 30 and e["restarts"] == 0 and e["cpu_percent"] is None
    r2 = await check(spec, ctx)  # the same memory: now there is a CPU rate
    assert r2.outcome is Outcome.OK and r2.extra["cpu_percent"] is not None
    assert r2.extra["restarts"] == 0 and "restarted" not in r2.extra


async def test_found_by_command_line_pattern_is_the_tree_root(trees, marker) -> None:
    tree = trees()
    r = await check(PbxProcessSpec(cmdline_regex=marker))
    assert (r.outcome, r.extra["pid"], r.extra["found_by"]) == (Outcome.OK, tree.pid, "name"), r
    assert r.extra["processes"] == 3


async def test_whole_group_stopped_is_hung_and_blocks(trees, tmp_path) -> None:
    tree = trees()
    spec = PbxProcessSpec(pidfile=str(tmp_path / "pbx.pid"))
    os.killpg(tree.pid, signal.SIGSTOP)
    wait_for(lambda: all(_state(p) == "T" for p in _group(tree.pid)), "all stopped")
    r = await check(spec)
    assert (r.outcome, r.blocks_takeover) == (Outcome.HUNG, True), r
    assert sorted(r.extra["stopped_pids"]) == sorted(_group(tree.pid))
    assert "frozen" in r.detail
    os.killpg(tree.pid, signal.SIGCONT)
    wait_for(lambda: all(_state(p) != "T" for p in _group(tree.pid)), "all resumed")
    r = await check(spec)
    assert (r.outcome, r.blocks_takeover, r.extra["stopped_pids"]) == (Outcome.OK, False, [])


async def test_part_of_the_group_stopped_is_degraded(trees, tmp_path) -> None:
    tree = trees()
    child = tree.children()[0]
    os.kill(child, signal.SIGSTOP)
    wait_for(lambda: _state(child) == "T", "child stopped")
    r = await check(PbxProcessSpec(pidfile=str(tmp_path / "pbx.pid")))
    assert (r.outcome, r.blocks_takeover, r.extra["stopped_pids"]) == (
        Outcome.DEGRADED,
        False,
        [child],
    ), r
    assert "1 of 3 processes stopped" in r.detail


async def test_killed_is_down_zombie_then_stale_pidfile(trees, tmp_path) -> None:
    tree = trees()
    spec = PbxProcessSpec(pidfile=str(tmp_path / "pbx.pid"))
    strict = PbxProcessSpec(pidfile=str(tmp_path / "pbx.pid"), always_running=True)
    os.killpg(tree.pid, signal.SIGKILL)
    # Not reaped yet (we are its parent and have not waited): a zombie main process.
    wait_for(lambda: _state(tree.pid) == "Z" and len(_group(tree.pid)) == 0, "zombie")
    r = await check(spec)
    assert (r.outcome, r.blocks_takeover, r.extra["running"]) == (Outcome.DOWN, False, False), r
    assert "zombie" in r.detail
    tree.proc.wait(timeout=5)
    r = await check(spec)
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, False), r
    assert f"pidfile names pid {tree.pid}, which is not running" in r.detail
    r = await check(strict)  # where the PBX must run on every node, down blocks takeover
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, True), r


async def test_restart_is_reported_with_the_previous_pid(trees, tmp_path) -> None:
    spec = PbxProcessSpec(pidfile=str(tmp_path / "pbx.pid"))
    ctx = ProbeContext(memory=ProbeMemory())
    first = trees()
    r = await check(spec, ctx)
    assert r.outcome is Outcome.OK and r.extra["restarts"] == 0
    first.kill()
    r = await check(spec, ctx)
    assert (r.outcome, r.extra["last_pid"]) == (Outcome.DOWN, first.pid), r
    second = trees()
    r = await check(spec, ctx)
    assert r.outcome is Outcome.OK, r
    assert (r.extra["pid"], r.extra["previous_pid"], r.extra["restarts"]) == (
        second.pid,
        first.pid,
        1,
    )
    assert r.extra["restarted"] is True
    assert f"restarted: pid {first.pid} -> {second.pid}" in r.detail
    # A fresh memory (a one-shot run) knows nothing of earlier runs.
    r = await check(spec, ProbeContext())
    assert r.extra["restarts"] == 0 and "previous_pid" not in r.extra


async def test_nothing_matching_is_down(marker) -> None:
    r = await check(PbxProcessSpec(cmdline_regex=marker, process_name="sh"))
    assert (r.outcome, r.extra["running"]) == (Outcome.DOWN, False), r
    assert "no process matches" in r.detail


async def test_unreadable_pidfile_and_garbage_pidfile(tmp_path) -> None:
    (tmp_path / "bad.pid").write_text("not-a-pid\n")
    r = await check(PbxProcessSpec(pidfile=str(tmp_path / "bad.pid")))
    assert r.outcome is Outcome.DOWN and "holds no PID" in r.detail, r
    r = await check(PbxProcessSpec(pidfile=str(tmp_path / "missing.pid")))
    assert r.outcome is Outcome.DOWN and "no pidfile" in r.detail, r


@pytest.mark.parametrize(
    "content",
    [
        "9" * 5000 + "\n",  # int() refuses more than 4,300 digits with a ValueError
        "\u0661\u0662\u0663\n",  # Arabic-Indic 123: not ASCII (the file is read as ASCII)
        "\uff11\n",  # fullwidth 1
        "0\n",
        "4194305\n",  # above Linux's PID_MAX_LIMIT
    ],
    ids=["5000_digits", "arabic_indic", "fullwidth", "zero", "above_pid_max"],
)
async def test_pidfile_number_is_ascii_and_bounded(tmp_path, content) -> None:
    (tmp_path / "odd.pid").write_text(content, encoding="utf-8")
    r = await check(PbxProcessSpec(pidfile=str(tmp_path / "odd.pid")))
    assert r.outcome is Outcome.DOWN and "holds no PID" in r.detail, r


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="at least one of"):
        PbxProcessSpec()
    with pytest.raises(ValueError, match="cmdline_regex"):
        PbxProcessSpec(cmdline_regex="(")
    with pytest.raises(ValueError, match="listen_port"):
        PbxProcessSpec(listen_port=70000)


# -- a real Kamailio: many processes, found by pidfile, by its SIP port, by name ---------------


@pytest.fixture
def own_kamailio(tmp_path: Path) -> Iterator[Callable[[], KamailioPeer]]:
    started: list[KamailioPeer] = []

    def start() -> KamailioPeer:
        try:
            peer = start_kamailio(tmp_path / "kam", tls=False)
        except MissingToolError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()


@pytest.mark.peers
async def test_kamailio_states(own_kamailio) -> None:
    kam = own_kamailio()
    # Other Kamailios may run on this machine (other tests): match this one by its run
    # directory, so no fallback search can find another.
    ours = re.escape(str(kam.rundir))
    pidfile = str(kam.rundir / "kamailio.pid")
    by_pidfile = PbxProcessSpec(pidfile=pidfile, process_name="kamailio", cmdline_regex=ours)
    by_port = PbxProcessSpec(listen_port=kam.udp_port, process_name="kamailio", cmdline_regex=ours)
    by_tcp = PbxProcessSpec(listen_port=kam.tcp_port, listen_transport="tcp")
    ctx = ProbeContext()
    for spec in (by_pidfile, by_port, by_tcp):
        r = await check(spec, ctx)
        assert (r.outcome, r.extra["pid"]) == (Outcome.OK, kam.pid), r
        assert r.extra["processes"] == len(kam.pids()) > 4  # main, workers, timers...
    assert r.extra["found_by"] == "listen_port"

    os.killpg(kam.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: all(_state(p) == "T" for p in kam.pids()), "kamailio stopped")
        r = await check(by_port, ctx)
        assert (r.outcome, r.blocks_takeover) == (Outcome.HUNG, True), r
        assert len(r.extra["stopped_pids"]) == r.extra["processes"]
    finally:
        os.killpg(kam.pid, signal.SIGCONT)
    wait_for(lambda: all(_state(p) != "T" for p in kam.pids()), "kamailio resumed")
    r = await check(by_pidfile, ctx)
    assert r.outcome is Outcome.OK, r

    old_pid = kam.pid
    os.killpg(kam.pid, signal.SIGKILL)
    kam.stop()  # reaps it
    r = await check(by_pidfile, ctx)
    assert (r.outcome, r.extra["running"]) == (Outcome.DOWN, False), r
    r = await check(by_port, ctx)
    assert r.outcome is Outcome.DOWN and "holds udp port" in r.detail, r

    kam2 = own_kamailio()
    r = await check(by_pidfile, ctx)
    assert r.outcome is Outcome.OK, r
    assert (r.extra["pid"], r.extra["previous_pid"], r.extra["restarts"]) == (kam2.pid, old_pid, 1)
