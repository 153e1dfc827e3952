"""Child processes: the one place sipwatch starts a local command and gets rid of it again.

Owns: starting an argv list (never a shell) in a session of its own, so that a timeout kills
the whole process group it made — a wrapper script's `sleep` included — by the PID we started
(start_new_session: the group id is that PID, everything in it is ours); reading its output
bounded in size; waiting for it, so no zombie is left; telling "could not start" (StartError)
apart from "ran and ended" (a Completed, whatever the exit code) and "timed out" (a Completed
with `timed_out`). Three shapes, one per kind of caller:

    run()          blocking, for code already in a thread (the Pacemaker tools)
    run_async()    the same under asyncio (the probes' status commands)
    Lines          a long-running command's stdout line by line, under asyncio, killed when
                   the `async with` ends (corosync-quorumtool -m)

Must not know: what a command or its exit code means, nor which tools exist — the callers
(`probes._command`, `cluster.pacemaker`, `cluster.quorum`) map results onto their own
outcomes and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from sipwatch.errors import StartError

__all__ = ["MAX_OUTPUT", "REAP_WAIT_S", "Completed", "Lines", "StartError", "run", "run_async"]

#: Default bound on each of stdout and stderr; the rest is read and thrown away.
MAX_OUTPUT = 4 << 20
#: How long to wait, after SIGKILL, for the group to go and the pipes to close.
REAP_WAIT_S = 2.0
_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Completed:
    """How a started command ended. `rc` is None when it timed out (and was killed); then
    stdout and stderr are empty: a killed command's partial output is not trusted.
    `duration_s` runs from the start to the end of the command, or to the timeout (the kill
    and the reaping after it are not counted)."""

    rc: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    duration_s: float = 0.0
    stdout_truncated: bool = False
    stderr_truncated: bool = False


def _start_error(argv: Sequence[str], exc: OSError) -> StartError:
    return StartError(
        argv[0],
        exc.strerror or str(exc),
        missing=isinstance(exc, FileNotFoundError),
        denied=isinstance(exc, PermissionError),
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # started with start_new_session: pid is the group id


def _check(argv: Sequence[str], max_output: int) -> None:
    if not argv:
        raise ValueError("empty command")
    if max_output < 0:
        raise ValueError("max_output must be >= 0")


# --- blocking ----------------------------------------------------------------------------------


class _Capture:
    """Reads a child's stdout and stderr pipes together (select), keeping `limit` bytes of
    each and draining the rest, so the child never blocks on a full pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], limit: int) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self._limit = limit
        self.out, self.err = proc.stdout.fileno(), proc.stderr.fileno()
        self._streams = {self.out: proc.stdout, self.err: proc.stderr}
        self.data = {fd: bytearray() for fd in self._streams}
        self.truncated = dict.fromkeys(self._streams, False)
        self._selector = selectors.DefaultSelector()
        for fd in self._streams:
            self._selector.register(fd, selectors.EVENT_READ)

    def read_until(self, deadline: float) -> bool:
        """Read until both pipes reach EOF (True) or `deadline` passes (False)."""
        while self._selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in self._selector.select(left):
                fd = key.fd
                assert isinstance(fd, int)
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    self._selector.unregister(fd)
                    continue
                kept = self.data[fd]
                room = self._limit - len(kept)
                if len(chunk) > room:
                    self.truncated[fd] = True
                kept += chunk[: max(0, room)]
        return True

    def close(self) -> None:
        self._selector.close()
        for stream in self._streams.values():
            stream.close()


def run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    max_output: int = MAX_OUTPUT,
) -> Completed:
    """Run argv, stdin from /dev/null, with a deadline; blocking. The command has ended when
    it exited and both its pipes closed: a child it left behind holding them counts as still
    running (and is killed with the group at the deadline). Raises StartError when the
    command cannot be started; otherwise returns, whatever happened."""
    _check(argv, max_output)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise _start_error(argv, exc) from exc
    capture = _Capture(proc, max_output)
    deadline = started + timeout_s
    rc: int | None = None
    try:
        if capture.read_until(deadline):
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        duration = time.monotonic() - started
        if rc is None:
            _kill_group(proc.pid)
            # Let the killed group close the pipes; a descendant that left the group (setsid)
            # may hold them for ever: stop reading then.
            capture.read_until(time.monotonic() + REAP_WAIT_S)
    except BaseException:  # KeyboardInterrupt and the like: never leave the group running
        _kill_group(proc.pid)
        raise
    finally:
        capture.close()
        if proc.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=REAP_WAIT_S)
    if rc is None:
        return Completed(None, timed_out=True, duration_s=duration)
    return Completed(
        rc,
        bytes(capture.data[capture.out]),
        bytes(capture.data[capture.err]),
        False,
        duration,
        capture.truncated[capture.out],
        capture.truncated[capture.err],
    )


# --- asyncio -----------------------------------------------------------------------------------


async def _spawn(
    argv: Sequence[str], env: Mapping[str, str] | None, stderr: int, limit: int
) -> tuple[asyncio.SubprocessTransport, asyncio.subprocess.Process]:
    """create_subprocess_exec, keeping the transport: closing it is the one way to let go of
    pipes that a descendant which left the group (setsid) still holds open."""
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: asyncio.subprocess.SubprocessStreamProtocol(limit, loop),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise _start_error(argv, exc) from exc
    return transport, asyncio.subprocess.Process(transport, protocol, loop)


async def _reap(
    transport: asyncio.SubprocessTransport, proc: asyncio.subprocess.Process, *, kill: bool
) -> None:
    """Kill the group (`kill`, else only if the command is still there), wait (bounded) for
    it to go, and let go of the pipes."""
    if kill or proc.returncode is None:
        _kill_group(proc.pid)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), REAP_WAIT_S)
    transport.close()


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_CHUNK):
        room = limit - len(kept)
        if len(chunk) > room:
            truncated = True
        kept += chunk[: max(0, room)]
    return bytes(kept), truncated


async def run_async(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    max_output: int = MAX_OUTPUT,
) -> Completed:
    """`run()` under asyncio. Cancelling it kills the command's group too."""
    _check(argv, max_output)
    started = time.monotonic()
    transport, proc = await _spawn(argv, env, asyncio.subprocess.PIPE, _CHUNK)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(timeout_s):
            (out, cut_out), (err, cut_err) = await asyncio.gather(
                _read_bounded(proc.stdout, max_output), _read_bounded(proc.stderr, max_output)
            )
            rc = await proc.wait()
    except TimeoutError:
        duration = time.monotonic() - started
        # Even when the command itself exited: what keeps its pipes open is in its group.
        await _reap(transport, proc, kill=True)
        return Completed(None, timed_out=True, duration_s=duration)
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        transport.close()
        raise
    transport.close()
    return Completed(rc, out, err, False, time.monotonic() - started, cut_out, cut_err)


class Lines:
    """A long-running command's stdout, line by line (stderr goes to /dev/null):

        async with Lines(argv) as lines:   # StartError if it cannot be started
            async for line in lines:       # bytes, with the newline; ends at EOF
                ...

    Leaving the `async with` (the command ended, the consumer stopped, or a cancellation)
    kills the group if the command is still there and reaps it. A line longer than
    `max_line` is skipped whole, never returned in part."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        max_line: int = _CHUNK,
    ) -> None:
        if not argv:
            raise ValueError("empty command")
        self._argv = list(argv)
        self._env = None if env is None else dict(env)
        self._max_line = max_line
        self._child: tuple[asyncio.SubprocessTransport, asyncio.subprocess.Process] | None = None

    @property
    def returncode(self) -> int | None:
        return None if self._child is None else self._child[1].returncode

    async def __aenter__(self) -> Lines:
        self._child = await _spawn(
            self._argv, self._env, asyncio.subprocess.DEVNULL, self._max_line
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._child is not None:
            await _reap(*self._child, kill=False)

    def __aiter__(self) -> Lines:
        return self

    async def __anext__(self) -> bytes:
        assert self._child is not None, "use in async with"
        stream = self._child[1].stdout
        assert stream is not None
        skipping = False  # inside a line longer than max_line
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:  # EOF: a last line without newline
                if end.partial and not skipping:
                    return end.partial
                raise StopAsyncIteration from None
            except asyncio.LimitOverrunError as over:
                await stream.readexactly(over.consumed)  # throw the too-long line's head away
                skipping = True
                continue
            if not skipping:
                return line
            skipping = False
