"""A peer of the rig that serves from a thread of its own: the thread, the socket pair that
wakes it for `stop()`, and what stopped it if `stop()` did not.

Owns: starting the serving thread, waking and joining it (bounded), closing the wake pair,
re-raising what the thread died of (a dead peer must fail the test, not pass as a silent
one). Must not know: what the peer serves — a subclass opens its own sockets, calls
`_start_thread(name)`, serves in `_serve()` with `self._wake[0]` in its select set (readable:
return), and closes its own sockets in `_close()`.

    class Peer(ThreadedPeer):
        _what = "my peer"                   # names it in stop()'s errors
        def start(self) -> Peer: ...; self._start_thread("my-peer"); return self
        def _serve(self) -> None: ...       # until self._wake[0] is readable
        def _close(self) -> None: ...       # its own sockets

`stop()` is bounded and idempotent; `with peer:` stops it at the end of the block.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import ClassVar, Self

__all__ = ["ThreadedPeer"]

_JOIN_S = 5.0


@dataclass
class ThreadedPeer:
    _what: ClassVar[str] = "peer"
    # Keyword-only, so that a subclass's own fields (without defaults) come first.
    error: BaseException | None = field(default=None, kw_only=True)  # what stopped the thread
    _wake: tuple[socket.socket, socket.socket] | None = field(
        default=None, repr=False, kw_only=True
    )
    _thread: threading.Thread | None = field(default=None, repr=False, kw_only=True)

    def _start_thread(self, name: str) -> None:
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # reported by stop(): a dead peer must fail the test
            self.error = exc

    def _serve(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=_JOIN_S)
            if self._thread.is_alive():
                raise RuntimeError(f"{self._what} thread did not stop within {_JOIN_S:g} s")
            self._thread = None
        self._close()
        for sock in self._wake or ():
            sock.close()
        self._wake = None
        failed, self.error = self.error, None
        if failed is not None:
            raise RuntimeError(f"the {self._what}'s thread failed: {failed!r}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
