"""Fencing as sipwatch sees it: whether STONITH is enabled and Pacemaker's fencing history.

Owns: parsing the fencing history (`crm_mon -1 --fence-history=3 --output-as=xml`) into
FenceEvents, the summary
`sipwatch cluster status` and /status show, and the watch beside the daemon's probes that
audits what fencing does to this cluster: a fence that failed or is still pending explains
why Pacemaker recovers nothing a lost node held (it must not, until that node is known to be
off), which is what an operator staring at a stopped group needs to read first.
Must not know: how a tool is run (PacemakerTools.fence_history runs it, with its timeout).

Nothing here acts on the cluster: a node being fenced or rebooting changes no verdict and
asks for no action (the verdict is this node's PBX as the probes see it).
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sipwatch.cluster.audit import ActionOutcome, AuditLog, AuditRecord
from sipwatch.errors import ClusterError

__all__ = ["ACTION", "FenceEvent", "FencingState", "FencingWatch", "parse_fence_history"]

_log = logging.getLogger("sipwatch.cluster")
ACTION = "fencing"
#: how many events /status and `cluster status` show (newest first)
SHOWN = 5


@dataclass(frozen=True, slots=True)
class FenceEvent:
    target: str
    action: str  # reboot, off, on
    status: str  # success, failed, pending
    delegate: str = ""  # the node that ran the fence agent
    origin: str = ""  # the node that asked
    completed: str = ""  # as Pacemaker prints it ("2026-12-02 16:59:27Z"); "" while pending
    exit_reason: str = ""

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.target, self.action, self.status, self.origin, self.completed)

    def describe(self) -> str:
        by = f" by {self.delegate}" if self.delegate else ""
        at = f" at {self.completed}" if self.completed else ""
        why = f" ({self.exit_reason})" if self.exit_reason else ""
        return f"{self.action} of {self.target}{by}: {self.status}{at}{why}"

    def to_dict(self) -> dict[str, str]:
        return {
            "target": self.target,
            "action": self.action,
            "status": self.status,
            "delegate": self.delegate,
            "origin": self.origin,
            "completed": self.completed,
            "exit_reason": self.exit_reason,
        }


def parse_fence_history(text: str) -> tuple[FenceEvent, ...]:
    """The <fence_event>s of crm_mon's (or stonith_admin's) XML output, newest first (as
    printed: pending ones first). ClusterError on anything that is not such output."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ClusterError(f"fence history: not XML: {exc}") from None
    if root.tag != "pacemaker-result":
        raise ClusterError(f"fence history: unexpected root <{root.tag}>")
    events = []
    for el in root.iter("fence_event"):
        target, action, status = el.get("target"), el.get("action"), el.get("status")
        if not target or not action or not status:
            raise ClusterError("fence history: a fence_event without target/action/status")
        events.append(
            FenceEvent(
                target=target,
                action=action,
                status=status,
                delegate=el.get("delegate", ""),
                origin=el.get("origin", ""),
                completed=el.get("completed", ""),
                exit_reason=el.get("exit-reason", "") or el.get("exit_reason", ""),
            )
        )
    return tuple(events)


@dataclass(frozen=True, slots=True)
class FencingState:
    """`enabled`: stonith-enabled as Pacemaker applies it (unset = true); None when unread.
    `events`: the history, newest first; None when it could not be read (`error` says why;
    with a CIB file there is no fencer to ask)."""

    enabled: bool | None
    events: tuple[FenceEvent, ...] | None
    error: str = ""

    def unresolved(self) -> list[FenceEvent]:
        """Per target, its newest event when that is a failure or still pending: a node
        Pacemaker has not (yet) managed to fence."""
        newest: dict[str, FenceEvent] = {}
        for e in self.events or ():
            newest.setdefault(e.target, e)
        return [e for e in newest.values() if e.status != "success"]

    def to_dict(self) -> dict[str, Any]:
        unresolved = self.unresolved()
        return {
            "enabled": self.enabled,
            "events": None if self.events is None else [e.to_dict() for e in self.events[:SHOWN]],
            "failed": [e.to_dict() for e in unresolved if e.status == "failed"],
            "pending": [e.to_dict() for e in unresolved if e.status == "pending"],
            "error": self.error,
        }

    def summary(self) -> str:
        if self.enabled is False:
            return "fencing disabled (stonith-enabled=false)"
        head = "fencing enabled" if self.enabled else "fencing unknown"
        if self.events is None:
            return f"{head}; history unread ({self.error or 'no fencer'})"
        if not self.events:
            return f"{head}; no fencing events"
        return f"{head}; last: " + "; ".join(e.describe() for e in self.events[:3])


@dataclass
class FencingWatch:
    """Reads the fencing state every `interval_s` (`read` runs in a thread: it calls crm
    tools), keeps the newest for /status, and audits each new failed, pending or completed
    fence once (events already in the history when the daemon started are not re-audited,
    except a fence still unresolved then)."""

    read: Callable[[], FencingState]
    audit: AuditLog
    node: str
    resource: str
    interval_s: float = 5.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    state: FencingState | None = None
    _seen: set[tuple[str, str, str, str, str]] | None = None

    def status(self) -> dict[str, Any] | None:
        return self.state.to_dict() if self.state is not None else None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.observe(await asyncio.to_thread(self.read))
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                continue

    def observe(self, state: FencingState) -> list[AuditRecord]:
        """Take a new reading; the audit records it made (new events only)."""
        previous, self.state = self.state, state
        if previous is None or previous.error != state.error:
            if state.error:
                _log.warning("event=fencing_unread error=%r", state.error)
            elif previous is not None:
                _log.info("event=fencing_read_again")
        if state.events is None:
            return []
        unresolved = {e.key for e in state.unresolved()}
        if self._seen is None:  # first reading: history, not news (unless unresolved)
            self._seen = {e.key for e in state.events if e.key not in unresolved}
        records = []
        for event in reversed(state.events):  # oldest first
            if event.key in self._seen:
                continue
            self._seen.add(event.key)
            records.append(self._record(event))
        return records

    def _record(self, event: FenceEvent) -> AuditRecord:
        result = {
            "success": ActionOutcome.DONE,
            "pending": ActionOutcome.WAITING,
        }.get(event.status, ActionOutcome.FAILED)
        if result is ActionOutcome.DONE:
            detail = f"{event.target} was fenced: what it held may now be recovered elsewhere"
        else:
            detail = (
                f"{event.target} is not fenced ({event.status}): Pacemaker recovers nothing "
                f"{event.target} held until it is, so {self.resource} stays where it is"
                " (stopped if it ran there)"
            )
        record = AuditRecord(
            at=self.clock(),
            action=ACTION,
            agent="fencing_watch",
            node=self.node,
            resource=self.resource,
            result=result,
            summary=event.describe(),
            detail=detail,
        )
        self.audit.append(record)
        level = logging.INFO if result is ActionOutcome.DONE else logging.WARNING
        _log.log(
            level,
            "event=fencing target=%s fence_action=%s status=%s delegate=%s detail=%r",
            event.target,
            event.action,
            event.status,
            event.delegate or "-",
            detail,
        )
        return record


def read_state(
    cluster_option: Callable[[str], str | None],
    history: Callable[[], tuple[FenceEvent, ...] | None],
) -> FencingState:
    """The state from two reads (each may raise ClusterError): the stonith-enabled property
    and the history (None: no fencer to ask)."""
    from sipwatch.cluster.rails import is_true

    errors = []
    try:
        value = cluster_option("stonith-enabled")
        enabled: bool | None = True if value is None else is_true(value)
    except ClusterError as exc:
        enabled = None
        errors.append(str(exc))
    try:
        events = history()
        if events is None:
            errors.append("no fencer to ask (a CIB file)")
    except ClusterError as exc:
        events = None
        errors.append(str(exc))
    return FencingState(enabled, events, "; ".join(errors))
