"""Audit records: one per cluster action taken, refused, failed or (dry-run) planned.

Owns: the AuditRecord value every agent method returns, and AuditLog, a bounded in-memory log
that can also append each record as one JSON line to a file. Must not know: how actions are
carried out. A record never holds a command line, tool output or secret: `summary` says what
was (or would be) changed in Pacemaker's terms, `detail` why it was refused or failed.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sipwatch.cluster.rails import Rail

__all__ = ["ActionOutcome", "AuditLog", "AuditRecord"]

_log = logging.getLogger("sipwatch.cluster")


class ActionOutcome(enum.StrEnum):
    DONE = "done"  # changed, and the change was read back
    UNCHANGED = "unchanged"  # the cluster already was as asked: nothing to do (not logged)
    WOULD = "would"  # dry run: the rails passed, this is what would have been done
    REFUSED = "refused"  # a rail said no (see `rail`)
    FAILED = "failed"  # a tool failed, hung or printed garbage; anything applied was undone
    # This node's cluster stack is still joining (no CIB to reach, or the node not a member
    # yet): nothing was handed over, and the caller retries. Logged once per wait.
    WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: datetime  # wall clock, UTC
    action: str  # publish_health, move_away, clear
    agent: str  # health_attribute, ban, standby
    node: str  # this node: the only one an agent ever acts on
    resource: str
    result: ActionOutcome
    summary: str  # what was / would be changed, e.g. "ban g_pbx from n1 for 1800 s"
    rail: Rail | None = None  # the rail that refused it
    detail: str = ""  # why: the refusal, the failure, the caller's reason
    dry_run: bool = False
    failover: bool = False  # it moves (or would move) the resource off this node
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """The cluster is (or, dry run, would be) as asked."""
        return self.result in (ActionOutcome.DONE, ActionOutcome.UNCHANGED, ActionOutcome.WOULD)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "action": self.action,
            "agent": self.agent,
            "node": self.node,
            "resource": self.resource,
            "result": str(self.result),
            "summary": self.summary,
            "rail": str(self.rail) if self.rail is not None else None,
            "detail": self.detail,
            "dry_run": self.dry_run,
            "failover": self.failover,
            "duration_s": round(self.duration_s, 3),
        }


class AuditLog:
    """The last `maxlen` records in memory; with `path`, every record is also appended to that
    file as a JSON line. A file that cannot be written is reported in the log, never raised."""

    def __init__(self, maxlen: int = 500, path: Path | str | None = None) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self._records: deque[AuditRecord] = deque(maxlen=maxlen)
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()

    def append(self, record: AuditRecord) -> None:
        with self._lock:
            self._records.append(record)
            if self.path is None:
                return
            try:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
            except OSError as exc:
                _log.warning(
                    "event=audit_write_failed path=%s error=%s", self.path, exc.strerror or exc
                )

    def records(self) -> tuple[AuditRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
