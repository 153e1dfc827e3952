"""The verdict file: `sipwatch run`'s current verdict where a shell reads it with builtins.

Owns: the file's format, writing it atomically on every verdict change and on a heartbeat,
and removing it when the daemon stops. Must not know: how the verdict is reached (policy) or
who reads it (the OCF shim's monitor fast path, a keepalived `vrrp_script`): the reader's
checks are listed here and implemented there.

Pacemaker runs the shim's monitor every second and keepalived its `vrrp_script` as often: a
Python start-up each time (`sipwatch check`, ~50-100 ms) is what this file spares them.

Format: `key=value` lines, ASCII, no quoting (values never hold a newline; `reason` is cut
to 200 characters), readable with `while IFS='=' read -r key value`:

    version=1
    verdict=green|yellow|red
    code=N            what `sipwatch check` would exit with now (0, 190, 1, 5, 7)
    score=0..100
    eligible=1|0
    active=1|0
    pid=N             the daemon, as seen in its own PID namespace
    boot_s=N          CLOCK_BOOTTIME in whole seconds when written: what /proc/uptime counts
    config=PATH       the config file the daemon runs (resolved)
    config_sha256=HEX ... and its digest when loaded
    config_current=1|0  0: the file has changed since it was loaded (not reloaded yet)
    reason=TEXT       the first reason, for exit reasons and logs

A reader trusts it only when all hold, and otherwise asks `sipwatch check` (the slow path):
the file exists and is readable; `version` is 1; `boot_s` is within its maximum age of
/proc/uptime (the heartbeat rewrites it every HEARTBEAT_S); `pid` is alive (`kill -0`);
`config` is the config it would have passed to `sipwatch check`; `config_current=1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from sipwatch.model import Decision

__all__ = [
    "HEARTBEAT_S",
    "VERSION",
    "VerdictFile",
    "boottime_s",
    "prepare_path",
    "reason_text",
    "render",
    "write_atomically",
]

log = logging.getLogger("sipwatch.daemon")
VERSION = 1
HEARTBEAT_S = 1.0
_REASON_MAX = 200


def boottime_s() -> int:
    """Seconds since boot, as /proc/uptime counts them (CLOCK_BOOTTIME, suspend included)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME))


def _clean(text: str) -> str:
    """One line of printable ASCII: a shell `read` must get the whole value."""
    out = "".join(c if " " <= c <= "~" else " " for c in text)
    return out[:_REASON_MAX]


def reason_text(decision: Decision) -> str:
    """The decision's first reason as one line of printable ASCII ("" when it has none)."""
    if not decision.reasons:
        return ""
    return _clean(decision.reasons[0].text)


def prepare_path(path: Path) -> None:
    """Create the directory and prove a file can be written there (at start: a clear config
    error, not a file that silently never appears). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    probe = path.with_name(f".{path.name}.{os.getpid()}.check")
    probe.write_text("")
    probe.unlink()


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside PATH and rename it over PATH: a reader sees the old
    content or the new, never half of it. Raises OSError (the temporary file is removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def render(
    decision: Decision,
    *,
    code: int,
    pid: int,
    boot_s: int,
    config: str,
    config_sha256: str,
    config_current: bool,
) -> str:
    fields = {
        "version": VERSION,
        "verdict": str(decision.verdict),
        "code": code,
        "score": decision.score,
        "eligible": int(decision.eligible),
        "active": int(decision.active),
        "pid": pid,
        "boot_s": boot_s,
        "config": _clean(config),
        "config_sha256": config_sha256,
        "config_current": int(config_current),
        "reason": reason_text(decision),
    }
    return "".join(f"{k}={v}\n" for k, v in fields.items())


class VerdictFile:
    """Keeps PATH up to date for as long as `run(stop)` runs: at once when `changed()` is
    called (the daemon's on_decision), else every HEARTBEAT_S; removed at the end.

    `current` returns the decision and the `sipwatch check` exit code it means, or None
    while the daemon is not ready (a probe has not reported yet): then there is no file, so
    no reader trusts a verdict nobody has reached."""

    def __init__(
        self,
        path: Path,
        current: Callable[[], tuple[Decision, int] | None],
        *,
        config: Path,
        config_sha256: str,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.path = path
        self._current = current
        self._config = config
        self._sha256 = config_sha256
        self._heartbeat_s = heartbeat_s
        self._wake = asyncio.Event()
        self._stat: tuple[int, int, int] | None = self._config_stat()
        self._config_current = True
        self._failing = False

    @staticmethod
    def prepare(path: Path) -> None:
        """Prove the file can be written (at start: a clear config error, not a silent fast
        path that never works). Raises OSError."""
        prepare_path(path)

    def changed(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self.write()
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait(
                    [waiter, stopper],
                    timeout=self._heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            self.remove()

    def write(self) -> None:
        now = self._current()
        if now is None:
            self.remove()
            return
        decision, code = now
        text = render(
            decision,
            code=code,
            pid=os.getpid(),
            boot_s=boottime_s(),
            config=str(self._config),
            config_sha256=self._sha256,
            config_current=self._check_config(),
        )
        try:
            write_atomically(self.path, text)
        except OSError as exc:
            if not self._failing:  # reported once, retried on every heartbeat
                log.error("event=verdict_file_failed path=%s error=%r", self.path, exc.strerror)
            self._failing = True
            return
        if self._failing:
            log.info("event=verdict_file_written path=%s", self.path)
        self._failing = False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _config_stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._config.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _check_config(self) -> bool:
        """Is the config file still the one loaded? Hashed again only when its stat changed."""
        stat = self._config_stat()
        if stat != self._stat:
            self._stat = stat
            try:
                digest = hashlib.sha256(self._config.read_bytes()).hexdigest()
            except OSError:
                digest = ""
            self._config_current = digest == self._sha256
        return self._config_current
