"""Transition hooks: operator commands run when the verdict changes (what keepalived's
`notify` gives its users), never in the way of probing.

Owns: the `[[hooks]]` config model (`HookSpec`), choosing which changes a hook gets, and
running it: an argv list (no shell), in its own process group, one run at a time per hook,
changes that arrive while it runs coalesced to the latest, killed (the whole group) at its
timeout, its output bounded and logged at debug. Must not know: how the verdict is reached.

    [[hooks]]
    argv = ["/usr/local/bin/page-oncall", "--team", "voice"]
    on = ["red", "green"]       # the new verdicts that run it; "any" (default): every change
    timeout_s = 10.0

The environment holds only PATH and these (never the daemon's own environment, which may
name probe secrets):

    SIPWATCH_OLD_VERDICT   green | yellow | red
    SIPWATCH_NEW_VERDICT   green | yellow | red
    SIPWATCH_REASON        the first reason, one line of printable ASCII
    SIPWATCH_NODE          this node's name (cluster.node, else the host name)

Logs: `event=hook_done hook=NAME rc=N duration_ms=N`, `event=hook_timeout`, `event=hook_failed`
(could not start), `event=hook_output` (debug). A change that ends where the coalesced run
would start (red -> green -> red while the red hook still runs) runs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sipwatch.model import Decision, Verdict
from sipwatch.verdict_file import reason_text

__all__ = ["OUTPUT_MAX", "HookRunner", "HookSpec", "hook_env"]

log = logging.getLogger("sipwatch.hooks")
#: Bytes of a hook's output kept for the debug log; the rest is read and thrown away.
OUTPUT_MAX = 4096
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: After the hook exits, how long a grandchild holding its output open is waited for.
_OUTPUT_GRACE_S = 0.5


class HookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    argv: tuple[str, ...] = Field(min_length=1, description="the command; no shell")
    on: tuple[Literal["green", "yellow", "red"], ...] | Literal["any"] = "any"
    timeout_s: float = Field(10.0, gt=0, le=3600)
    name: str = Field("", max_length=64, description="for logs; default: argv[0]'s basename")

    @field_validator("argv")
    @classmethod
    def _argv_words(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v[0]:
            raise ValueError("argv[0] must not be empty")
        if any("\0" in word for word in v):
            raise ValueError("argv must not contain NUL characters")
        return v

    @property
    def label(self) -> str:
        return self.name or Path(self.argv[0]).name

    def wants(self, new: Verdict) -> bool:
        return self.on == "any" or str(new) in self.on


def hook_env(old: Verdict, new: Verdict, reason: str, node: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", _DEFAULT_PATH),
        "SIPWATCH_OLD_VERDICT": str(old),
        "SIPWATCH_NEW_VERDICT": str(new),
        "SIPWATCH_REASON": reason,
        "SIPWATCH_NODE": node,
    }


class HookRunner:
    """One hook. `changed(old, new)` queues a change (the latest wins); `run(stop)` runs
    the queued change whenever there is one, one at a time, until `stop` is set (a run in
    progress is then killed: the daemon's shutdown is bounded)."""

    def __init__(self, spec: HookSpec, node: str) -> None:
        self.spec = spec
        self.node = node
        self._pending: tuple[Verdict, Decision] | None = None
        self._wake = asyncio.Event()

    def changed(self, old: Verdict, new: Decision) -> None:
        if not self.spec.wants(new.verdict):
            return
        if self._pending is not None:
            old = self._pending[0]  # coalesced: from what the hook last missed, to the latest
        self._pending = (old, new)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waiter = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            self._wake.clear()
            pending, self._pending = self._pending, None
            if stop.is_set() or pending is None:
                continue
            old, decision = pending
            if old is decision.verdict:
                log.debug("event=hook_coalesced hook=%s verdict=%s", self.spec.label, old)
                continue
            env = hook_env(old, decision.verdict, reason_text(decision), self.node)
            job = asyncio.create_task(self._run_once(env))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([job, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not job.done():
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)

    async def _run_once(self, env: dict[str, str]) -> None:
        spec = self.spec
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: killed whole at the timeout
                close_fds=True,
            )
        except OSError as exc:
            log.error("event=hook_failed hook=%s error=%r", spec.label, exc.strerror or str(exc))
            return
        assert proc.stdout is not None
        output = bytearray()
        reader = asyncio.create_task(_read_bounded(proc.stdout, output))
        try:
            rc = await asyncio.wait_for(proc.wait(), spec.timeout_s)
        except TimeoutError:
            _kill_group(proc.pid)
            await _reap(proc)
            log.error(
                "event=hook_timeout hook=%s timeout_s=%g pid=%d",
                spec.label,
                spec.timeout_s,
                proc.pid,
            )
            return
        except asyncio.CancelledError:  # the daemon stops: the hook goes with it
            _kill_group(proc.pid)
            await _reap(proc)
            log.warning("event=hook_killed hook=%s reason=shutdown pid=%d", spec.label, proc.pid)
            raise
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), _OUTPUT_GRACE_S)
            reader.cancel()
            if output:
                log.debug(
                    "event=hook_output hook=%s output=%r",
                    spec.label,
                    output.decode(errors="replace"),
                )
        duration_ms = round((time.monotonic() - started) * 1000)
        level = logging.INFO if rc == 0 else logging.WARNING
        log.log(level, "event=hook_done hook=%s rc=%d duration_ms=%d", spec.label, rc, duration_ms)


async def _read_bounded(stream: asyncio.StreamReader, into: bytearray) -> None:
    """Keep the first OUTPUT_MAX bytes; read and drop the rest so the hook never blocks on a
    full pipe."""
    while chunk := await stream.read(65536):
        room = OUTPUT_MAX - len(into)
        if room > 0:
            into += chunk[:room]


def _kill_group(pid: int) -> None:
    """SIGKILL the hook's process group (its session, started by us: pgid == pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 5.0)
