"""The keepalived track file: the daemon's verdict as the one integer keepalived reads.

Owns: the value (what each verdict means to keepalived), keeping the file current (at once
on a verdict change, and on a heartbeat that restores a file someone removed or overwrote),
reporting a failed write once and retrying it. Must not know: how the verdict is reached
(policy) or keepalived's configuration (deploy/keepalived/).

keepalived (a top-level `track_file NAME { file PATH; weight W }`, named in a
`vrrp_instance`'s `track_file { NAME }`) multiplies the integer by the weight and adds it to
the instance's priority; with `weight 0` any non-zero value puts the instance into FAULT,
which releases the VIP. The value:

    0   green, or yellow: this node serves (a degraded node keeps the VIP: moving it for a
        lost DRBD peer or a 503 + Retry-After drain would be a failover to a node that is
        no better, and a yellow node is still eligible to run the PBX)
    1   red, or not eligible to run the PBX (what `sipwatch check` exits non-zero for)

Until every probe has reported once the file is left as it was (a restarted daemon must not
flap the VIP), and it is left in place when the daemon stops: keepalived has no notion of a
stale track file, so an operator who wants "sipwatch is gone" to count as a failure uses the
`vrrp_script` variant (deploy/keepalived/sipwatch-vrrp-check reads the verdict file and
checks its age).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from sipwatch.model import Decision, Verdict
from sipwatch.verdict_file import prepare_path, write_atomically

__all__ = ["HEARTBEAT_S", "TrackFile", "track_value"]

log = logging.getLogger("sipwatch.daemon")
HEARTBEAT_S = 5.0


def track_value(decision: Decision) -> int:
    """keepalived's integer for a decision: 0 healthy, 1 red or ineligible."""
    return 1 if decision.verdict is Verdict.RED or not decision.eligible else 0


class TrackFile:
    """Keeps PATH holding `track_value(current())` for as long as `run(stop)` runs.

    `current` returns the daemon's decision, or None while it is not ready (a probe has not
    reported yet): then nothing is written."""

    def __init__(
        self,
        path: Path,
        current: Callable[[], Decision | None],
        *,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.path = path
        self._current = current
        self._heartbeat_s = heartbeat_s
        self._wake = asyncio.Event()
        self._failing = False
        self._written: int | None = None

    @staticmethod
    def prepare(path: Path) -> None:
        """Prove PATH can be written (at start). Raises OSError."""
        prepare_path(path)

    def changed(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.write()
            self._wake.clear()
            waiter = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait(
                [waiter, stopper], timeout=self._heartbeat_s, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            stopper.cancel()

    def write(self) -> None:
        decision = self._current()
        if decision is None:
            return
        value = track_value(decision)
        try:
            write_atomically(self.path, f"{value}\n")
        except OSError as exc:
            if not self._failing:  # reported once, retried on every change and heartbeat
                log.error("event=track_file_failed path=%s error=%r", self.path, exc.strerror)
            self._failing = True
            return
        if self._failing:
            log.info("event=track_file_written path=%s value=%d", self.path, value)
        elif value != self._written:
            log.info("event=track_file_changed path=%s value=%d", self.path, value)
        self._failing = False
        self._written = value
