"""Wake-up sources kinds share (see sipwatch.probes.kind.Watch).

Owns: `ExitWatch`, a pidfd (Linux >= 5.3) armed on a process a probe found running: when it
exits, every probe runs at once, so a crash is judged within milliseconds instead of at the
next interval. Without pidfds (old kernel, another PID namespace) the interval still covers
it. Must not know: which kind's results name the process (`pid_of` says).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from sipwatch.model import ProbeResult
from sipwatch.probes.kind import WakeAll

if TYPE_CHECKING:
    import asyncio

#: From a pidfd firing to re-probing. The pidfd is readable a moment before /proc shows the
#: process as a zombie (the kernel notifies, then sets the exit state): probes run at once
#: would still see it running. 50 ms is far beyond that window.
EXIT_SETTLE_S = 0.05


class ExitWatch:
    """One pidfd per process `pid_of(result)` names (None: nothing to watch); its exit
    calls `wake_all(f"{label} pid {pid} exited")`. Closed when `run` ends: a result seen
    after that (a probe finishing during shutdown) arms nothing."""

    def __init__(
        self, wake_all: WakeAll, pid_of: Callable[[ProbeResult], int | None], label: str
    ) -> None:
        self.wake_all = wake_all
        self.pid_of = pid_of
        self.label = label
        self.closed = False
        self._fds: dict[int, int] = {}  # pid -> its pidfd

    def seen(self, result: ProbeResult) -> None:
        import asyncio

        pid = self.pid_of(result)
        if self.closed or pid is None or pid in self._fds:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop: results fed by hand
            return
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            return

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._fds.pop(pid, None)
            loop.call_later(EXIT_SETTLE_S, self.wake_all, f"{self.label} pid {pid} exited")

        loop.add_reader(fd, exited)
        self._fds[pid] = fd

    async def run(self, stop: asyncio.Event) -> None:
        import asyncio

        try:
            await stop.wait()
        finally:
            self.closed = True
            loop = asyncio.get_running_loop()
            for fd in self._fds.values():
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)
                os.close(fd)
            self._fds.clear()
