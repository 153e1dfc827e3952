"""Running a local command for a probe: argv list, a timeout, bounded output, never raises.

Owns: telling apart "not installed", "not permitted", "timed out", "exited non-zero" and
"ran", in the words a probe's detail uses. Starting, bounding, killing and reaping the command
is `sipwatch.subproc`'s. Must not know: what the output means (the probe parses it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipwatch.errors import StartError
from sipwatch.subproc import MAX_OUTPUT, run_async

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


async def run_command(
    argv: tuple[str, ...] | list[str], *, timeout_s: float, max_output: int = MAX_OUTPUT
) -> CommandRun:
    """Run argv (no shell) with a deadline. Never raises (except CancelledError)."""
    if not argv:
        return CommandRun(MISSING, error="empty command")
    try:
        done = await run_async(argv, timeout_s=timeout_s, max_output=max_output)
    except StartError as exc:
        if exc.missing:
            return CommandRun(MISSING, error=f"{exc.program}: command not found")
        if exc.denied:
            return CommandRun(DENIED, error=f"{exc.program}: {exc.reason}")
        return CommandRun(DENIED, error=f"{exc.program}: cannot run: {exc.reason}")
    if done.timed_out:
        return CommandRun(TIMEOUT, error=f"{argv[0]} did not finish within {timeout_s:g} s")
    kind = RAN if done.rc == 0 else FAILED
    return CommandRun(kind, done.rc, done.stdout, done.stderr, truncated=done.stdout_truncated)
