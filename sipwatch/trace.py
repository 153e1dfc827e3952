"""A probe run's exchange, for `GET /probes/NAME/trace`: every SIP message sent and received,
in order, with times — like blackbox_exporter's debug output.

The daemon opens a Trace around each probe run (`tracing`); the SIP connection records into
the current one (a context variable, so the tasks of one run share it and other runs never
see it). Secrets are masked when recorded, not when shown: a digest `response=` (and
`cnonce=`, which with it and the nonce narrows a password guess) never enters the trace.

Bounded: at most MAX_EVENTS messages of at most MAX_MESSAGE bytes each are kept per run.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

MAX_EVENTS = 64
MAX_MESSAGE = 8192
_SECRET_PARAMS = re.compile(
    rb'(?i)\b(response|cnonce)\s*=\s*("[^"\r\n]*"|[^,\s\r\n]*)',
)
_current: ContextVar[Trace | None] = ContextVar("sipwatch_trace", default=None)


def mask(data: bytes) -> bytes:
    """The message with digest `response=` and `cnonce=` values replaced by `***`."""
    return _SECRET_PARAMS.sub(rb'\1="***"', data)


@dataclass(frozen=True, slots=True)
class Event:
    at_ms: float  # since the trace began
    direction: str  # "sent", "received", "note"
    peer: str
    text: str


@dataclass(slots=True)
class Trace:
    probe: str
    started_wall: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    events: list[Event] = field(default_factory=list)
    dropped: int = 0
    outcome: str = ""

    def record(self, direction: str, peer: str, data: bytes | str) -> None:
        if len(self.events) >= MAX_EVENTS:
            self.dropped += 1
            return
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_MESSAGE:
            raw = raw[:MAX_MESSAGE] + b"\r\n[... cut at %d bytes]" % MAX_MESSAGE
        text = mask(raw).decode("utf-8", errors="replace")
        at_ms = (time.monotonic() - self.started) * 1000
        self.events.append(Event(round(at_ms, 3), direction, peer, text))

    def render(self) -> str:
        begun = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.started_wall))
        lines = [f"probe {self.probe}: run at {begun} UTC, outcome {self.outcome or '?'}"]
        for e in self.events:
            arrow = {"sent": "-->", "received": "<--"}.get(e.direction, "---")
            lines.append(f"\n{e.at_ms:10.3f} ms {arrow} {e.direction} {e.peer}")
            lines.append(e.text.rstrip("\r\n").replace("\r\n", "\n"))
        if not self.events:
            lines.append(
                "\n(no SIP message: the probe is not a SIP probe, or failed before sending)"
            )
        if self.dropped:
            lines.append(f"\n({self.dropped} more messages not kept)")
        return "\n".join(lines) + "\n"


def current() -> Trace | None:
    """The trace of the probe run in progress here, if any."""
    return _current.get()


@contextlib.contextmanager
def tracing(probe: str) -> Iterator[Trace]:
    trace = Trace(probe)
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)
