"""`sipwatch.subproc` against real processes (`sh -c`, `sleep`): exit codes, bounded output,
a timeout that kills the whole group, nothing left unreaped, and commands that cannot start.

Every test is quick: hung commands get timeouts of a few tenths of a second, and the sleeps
they hang in are killed, never waited out. A grandchild killed with its group is reparented
to PID 1, whose reaping is not ours (some container inits never do it): "dead" below means
gone or a zombie; the child we started ourselves must be gone (reaped).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipwatch import subproc
from sipwatch.errors import StartError
from sipwatch.subproc import Completed, Lines, run, run_async

SH = "/bin/sh"


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2]


def _wait_dead(pid: int, *, gone: bool = False, within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while (state := _state(pid)) != "gone" and (gone or state != "Z"):
        assert time.monotonic() < deadline, f"pid {pid} still there ({state})"
        time.sleep(0.01)


def _pid(marker: Path) -> int:
    deadline = time.monotonic() + 2.0
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline, f"{marker} never written"
        time.sleep(0.01)
    return int(marker.read_text())


def _async_run(argv: list[str], **kw: Any) -> Completed:
    return asyncio.run(run_async(argv, **kw))


@pytest.fixture(params=["blocking", "asyncio"])
def runner(request: pytest.FixtureRequest) -> Callable[..., Completed]:
    """Both drivers must behave the same."""
    return run if request.param == "blocking" else _async_run


def test_output_and_exit_code(runner: Callable[..., Completed]) -> None:
    done = runner([SH, "-c", "echo out; echo err >&2"], timeout_s=5)
    assert (done.rc, done.stdout, done.stderr, done.timed_out) == (0, b"out\n", b"err\n", False)
    assert 0 < done.duration_s < 5


def test_non_zero_exit_is_a_result(runner: Callable[..., Completed]) -> None:
    done = runner([SH, "-c", "echo oops >&2; exit 3"], timeout_s=5)
    assert (done.rc, done.stderr, done.timed_out) == (3, b"oops\n", False)


def test_output_in_pieces_is_read_whole(runner: Callable[..., Completed]) -> None:
    done = runner([SH, "-c", "printf a; sleep 0.1; printf b"], timeout_s=5)
    assert (done.stdout, done.stdout_truncated) == (b"ab", False)


def test_output_is_bounded_and_the_rest_drained(runner: Callable[..., Completed]) -> None:
    # 1 MiB each: more than a pipe holds, so the command finishes only if the rest is read.
    script = "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"
    done = runner([SH, "-c", script], timeout_s=5, max_output=1000)
    assert done.rc == 0 and not done.timed_out
    assert (len(done.stdout), done.stdout_truncated) == (1000, True)
    assert (len(done.stderr), done.stderr_truncated) == (1000, True)


def test_environment_is_the_one_given(runner: Callable[..., Completed]) -> None:
    done = runner([SH, "-c", 'echo "$ONLY"'], timeout_s=5, env={"ONLY": "this", "PATH": "/bin"})
    assert done.stdout == b"this\n"


def test_timeout_kills_the_group_with_its_grandchild(
    runner: Callable[..., Completed], tmp_path: Path
) -> None:
    child, grandchild = tmp_path / "child.pid", tmp_path / "grandchild.pid"
    script = f'echo $$ > "{child}"; sleep 30 & echo $! > "{grandchild}"; wait'
    started = time.monotonic()
    done = runner([SH, "-c", script], timeout_s=0.3)
    assert time.monotonic() - started < 1.5
    assert (done.rc, done.timed_out, done.stdout, done.stderr) == (None, True, b"", b"")
    assert 0.3 <= done.duration_s < 1.0
    _wait_dead(_pid(grandchild))
    _wait_dead(_pid(child), gone=True, within_s=0.5)  # reaped by us, no zombie left


def test_a_grandchild_holding_the_pipes_counts_as_running(
    runner: Callable[..., Completed], tmp_path: Path
) -> None:
    """The command exits at once, its background child keeps stdout open: that is a hang
    (the output is not complete), killed at the deadline."""
    grandchild = tmp_path / "grandchild.pid"
    done = runner([SH, "-c", f'sleep 30 & echo $! > "{grandchild}"; exit 0'], timeout_s=0.3)
    assert (done.rc, done.timed_out) == (None, True)
    _wait_dead(_pid(grandchild))


def test_a_descendant_that_left_the_group_does_not_hold_us(
    runner: Callable[..., Completed], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setsid takes it out of the group, so the kill misses it and it keeps the pipes:
    after REAP_WAIT_S we stop reading instead of waiting for it."""
    monkeypatch.setattr(subproc, "REAP_WAIT_S", 0.2)
    escaped = tmp_path / "escaped.pid"
    script = f"setsid sh -c 'echo $$ > \"{escaped}\"; exec sleep 30' & wait"
    started = time.monotonic()
    try:
        done = runner([SH, "-c", script], timeout_s=0.3)
        assert time.monotonic() - started < 1.5
        assert (done.rc, done.timed_out) == (None, True)
    finally:
        os.kill(_pid(escaped), signal.SIGKILL)  # ours to clean up: it left the group


def test_missing_binary_cannot_start(runner: Callable[..., Completed], tmp_path: Path) -> None:
    with pytest.raises(StartError) as caught:
        runner([str(tmp_path / "no" / "such-tool"), "--x"], timeout_s=5)
    err = caught.value
    assert (err.missing, err.denied) == (True, False)
    assert err.program == str(tmp_path / "no" / "such-tool")
    assert str(err) == f"{err.program}: No such file or directory"


def test_not_executable_cannot_start(runner: Callable[..., Completed], tmp_path: Path) -> None:
    path = tmp_path / "tool"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644 if os.geteuid() else 0o600)  # root runs anything with an x bit
    with pytest.raises(StartError) as caught:
        runner([str(path)], timeout_s=5)
    assert (caught.value.missing, caught.value.denied) == (False, True)
    assert caught.value.reason == "Permission denied"


def test_empty_command_is_a_programming_error(runner: Callable[..., Completed]) -> None:
    with pytest.raises(ValueError):
        runner([], timeout_s=5)


async def test_cancelling_kills_the_group(tmp_path: Path) -> None:
    grandchild = tmp_path / "grandchild.pid"
    script = f'sleep 30 & echo $! > "{grandchild}"; wait'
    task = asyncio.create_task(run_async([SH, "-c", script], timeout_s=30))
    deadline = time.monotonic() + 2.0
    while not grandchild.exists() or not grandchild.read_text().strip():
        assert time.monotonic() < deadline, "the command never started its child"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _wait_dead(_pid(grandchild))


# --- Lines -------------------------------------------------------------------------------------


async def test_lines_come_one_by_one_until_eof() -> None:
    script = "echo one; sleep 0.05; echo two; printf three"
    async with Lines([SH, "-c", script]) as lines:
        got = [line async for line in lines]
    assert got == [b"one\n", b"two\n", b"three"]
    assert lines.returncode == 0


async def test_leaving_lines_early_kills_the_group(tmp_path: Path) -> None:
    grandchild = tmp_path / "grandchild.pid"
    script = f'sleep 30 & echo $! > "{grandchild}"; echo ready; wait'
    started = time.monotonic()
    async with Lines([SH, "-c", script]) as lines:
        assert await anext(lines) == b"ready\n"
    assert time.monotonic() - started < 1.5
    assert lines.returncode == -signal.SIGKILL
    _wait_dead(_pid(grandchild))


async def test_an_overlong_line_is_skipped_whole() -> None:
    script = "echo short; head -c 5000 /dev/zero | tr '\\0' x; echo; echo after"
    async with Lines([SH, "-c", script], max_line=1024) as lines:
        got = [line async for line in lines]
    assert got == [b"short\n", b"after\n"]


async def test_lines_of_a_missing_tool_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(StartError) as caught:
        async with Lines([str(tmp_path / "corosync-quorumtool"), "-m"]):
            pass  # pragma: no cover
    assert caught.value.missing
