"""Running a local command for a probe: argv list, a timeout, bounded output, never raises.

Owns: starting the command in its own session (so a timeout kills the whole group it made,
by the PID we started, and a hung grandchild cannot keep the pipe open), reading at most
`max_output` bytes, and telling apart "not installed", "not permitted", "timed out", "exited
non-zero" and "ran". Must not know: what the output means (the probe parses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

#: Outcome kinds of a command run.
RAN, MISSING, DENIED, TIMEOUT, FAILED = "ran", "missing", "denied", "timeout", "failed"


@dataclass(frozen=True, slots=True)
class CommandRun:
    """How a command ended. `kind` is one of ran/missing/denied/timeout/failed; `ran` and
    `failed` (non-zero exit) carry output; `error` says what went wrong otherwise."""

    kind: str
    returncode: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str = ""
    truncated: bool = False

    def stderr_line(self) -> str:
        """The first non-empty stderr line, for a one-line detail (never the whole output)."""
        for line in self.stderr.decode(errors="replace").splitlines():
            if line.strip():
                return line.strip()[:200]
        return ""


def _kill_group(pid: int) -> None:
    # The process was started with start_new_session=True: its group id is its PID, and
    # everything in that group is ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_command(
    argv: tuple[str, ...] | list[str], *, timeout_s: float, max_output: int = 4 << 20
) -> CommandRun:
    """Run argv (no shell) with a deadline. Never raises (except CancelledError)."""
    if not argv:
        return CommandRun(MISSING, error="empty command")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        return CommandRun(MISSING, error=f"{argv[0]}: command not found")
    except PermissionError as exc:
        return CommandRun(DENIED, error=f"{argv[0]}: {exc.strerror}")
    except OSError as exc:
        return CommandRun(DENIED, error=f"{argv[0]}: cannot run: {exc.strerror or exc}")
    assert proc.stdout is not None and proc.stderr is not None

    async def read(stream: asyncio.StreamReader) -> tuple[bytes, bool]:
        data = await stream.read(max_output + 1)
        truncated = len(data) > max_output
        while await stream.read(65536):  # drain the rest so the child cannot block on us
            truncated = True
        return data[:max_output], truncated

    try:
        async with asyncio.timeout(timeout_s):
            (out, cut_out), (err, _) = await asyncio.gather(read(proc.stdout), read(proc.stderr))
            returncode = await proc.wait()
    except TimeoutError:
        _kill_group(proc.pid)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await proc.wait()
        return CommandRun(TIMEOUT, error=f"{argv[0]} did not finish within {timeout_s:g} s")
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        raise
    kind = RAN if returncode == 0 else FAILED
    return CommandRun(kind, returncode, out, err, truncated=cut_out)
