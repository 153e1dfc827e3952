"""The HAProxy agent-check responder: on each TCP connection, one line saying how HAProxy
should treat this node, then close.

Owns: the line for each state of the daemon (`agent_line`, pure) and a small asyncio TCP
server that never delays probing (`AgentCheckServer`). Must not know: how the verdict is
reached (policy), HTTP (http.py).

HAProxy (configuration manual, "agent-check") reads one line of words separated by spaces,
tabs or commas: `N%` sets the weight relative to the configured one, `ready` / `drain` /
`maint` the administrative state, `up` / `down` the operational state, and `#text` after
`down` is shown as the reason. Only the agent can undo what it set, so every line states the
whole wanted state (operational, administrative and weight where it matters):

    no result yet (starting)    down #starting
    red                         down ready #<first reason>   ("ready": a node that was in
                                MAINT as a standby must show DOWN, not hide behind MAINT)
    standby, not red            up maint     (see below)
    draining (503 + Retry-After, or the cluster freeze)
                                up drain     (no new connections except persistent ones)
    yellow                      up ready 50%  (a degraded active node still serves, at
                                lower weight: it is not taken out of the farm for a
                                lost DRBD peer or a slow RTT; with the one active node of a
                                VIP design the weight only shows in the stats)
    green                       up ready 100%

A healthy standby answers `up maint`: in a VIP design only the active node should get
traffic. `maint` takes no new connections at all, not even persistent ones (`drain` still
accepts those, and a standby runs no PBX to take them), the stats page shows MAINT rather
than DOWN (so alerts on DOWN servers do not fire for the two healthy standbys of three), and
HAProxy keeps asking the agent while in MAINT, so the node's `ready` brings it back the
moment it becomes active. `up` is sent with it so a standby that was red comes back UP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from collections.abc import Callable, Iterable

from sipwatch.model import Decision, Outcome, ProbeResult, Verdict

__all__ = [
    "LINGER_S",
    "MAX_CLIENTS",
    "WRITE_TIMEOUT_S",
    "AgentCheckServer",
    "agent_line",
    "safe_reason",
]

log = logging.getLogger("sipwatch.agent_check")
#: Connections served at once; more are closed at once (HAProxy opens one per server and
#: agent-inter: a handful per load balancer).
MAX_CLIENTS = 32
#: How long the line may take to leave (a client that does not read is dropped).
WRITE_TIMEOUT_S = 1.0
#: After the line, what the client sends (HAProxy's `agent-send`) is read and thrown away
#: until it closes, for at most this long: closing with unread data would send a reset.
LINGER_S = 1.0
_REASON_MAX = 60
_SAFE = frozenset(string.ascii_letters + string.digits + "._:/-")


def safe_reason(text: str) -> str:
    """A short reason HAProxy shows as-is and a shell never interprets: letters, digits and
    `._:/-`; anything else becomes `_`; at most _REASON_MAX characters."""
    out = "".join(c if c in _SAFE else "_" for c in text.strip())
    return out[:_REASON_MAX] or "red"


def _draining(decision: Decision, results: Iterable[ProbeResult]) -> bool:
    if any(r.outcome == "draining" for r in decision.reasons):
        return True
    return any(r.outcome is Outcome.DRAINING for r in results)


def agent_line(
    decision: Decision | None, *, results: Iterable[ProbeResult] = (), frozen: bool = False
) -> str:
    """The agent-check line (no newline) for the daemon's state; `decision` None: starting."""
    if decision is None:
        return "down #starting"
    if decision.verdict is Verdict.RED:
        reasons = [r for r in decision.reasons if r.effect == "red"] or list(decision.reasons)
        first = reasons[0] if reasons else None
        why = f"{first.probe} {first.outcome}" if first is not None else "red"
        return f"down ready #{safe_reason(why)}"
    if not decision.active:
        return "up maint"
    if frozen or _draining(decision, results):
        return "up drain"
    if decision.verdict is Verdict.YELLOW:
        return "up ready 50%"
    return "up ready 100%"


class AgentCheckServer:
    """Answers each connection with `answer()` and closes. `answer` runs on the event loop
    and must be quick (it reads the daemon's state, at most a stat of the freeze file)."""

    def __init__(self, answer: Callable[[], str], *, max_clients: int = MAX_CLIENTS) -> None:
        self._answer = answer
        self._max_clients = max_clients
        self._clients = 0
        self._refused = False  # "too many clients" is logged once per burst
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind and listen. Raises OSError (address in use, no permission)."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=4096)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), LINGER_S + WRITE_TIMEOUT_S)
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= self._max_clients:
            if not self._refused:
                log.warning("event=agent_check_busy clients=%d", self._clients)
            self._refused = True
            writer.transport.abort()
            return
        self._refused = False
        self._clients += 1
        clean = False
        try:
            try:
                line = self._answer()
            except Exception:  # a bug here must not leave HAProxy with a stale "up"
                log.exception("event=agent_check_failed")
                line = "down #sipwatch_error"
            writer.write(line.encode("ascii", "replace") + b"\n")
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.wait_for(self._discard(reader), LINGER_S)
            clean = True
        except (TimeoutError, OSError):
            pass  # a slow or vanished client: nothing to report, it is dropped
        finally:
            self._clients -= 1
            if clean:
                writer.close()
            else:  # close() would wait for a client that does not read: drop it now
                writer.transport.abort()

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        while await reader.read(4096):
            pass
