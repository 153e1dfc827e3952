"""Safety rails: what every cluster action must pass before it may change anything.

Owns: the rail names (Rail), their settings (RailConfig), the failover budget and cooldown
bookkeeping (RailState, on a clock handed in), and the manual freeze switch. Reads nothing but
the freeze file and the values it is given. Must not know: command lines (pacemaker.py) or
what an action is (agents.py).

The rails, in the order the agents check them:

    own_node    the verdict is about another node: a node acts on its own health only
    freeze      the freeze file exists, or the node attribute `sipwatch-freeze` is true on
                this node, or the node is in maintenance, or the cluster is in maintenance-mode
    quorum      this partition has no quorum (the CIB's `have-quorum`)
    not_active  move-away/ban/standby while the resource does not run here (a standby node
                publishes its health, it never moves the active node's resources)
    last_node   crm_simulate on a copy of the CIB with the change applied leaves the resource
                stopped where it would have run without the change
    cooldown    a failover (an action that moves the resource off this node) happened less
                than `cooldown_s` ago
    budget      `budget` failovers already happened within the last `budget_window_s`

Restoring actions (health back to green, clearing a ban or standby) only pass own_node, freeze
and quorum: recovering is never rate-limited and never strands the resource.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_FREEZE_FILE", "Rail", "RailConfig", "RailState", "is_true"]

DEFAULT_FREEZE_FILE = Path("/etc/sipwatch/freeze")


class Rail(enum.StrEnum):
    OWN_NODE = "own_node"
    FREEZE = "freeze"
    QUORUM = "quorum"
    NOT_ACTIVE = "not_active"
    LAST_NODE = "last_node"
    COOLDOWN = "cooldown"
    BUDGET = "budget"


def is_true(value: str | None) -> bool:
    """Pacemaker's idea of a true boolean."""
    return value is not None and value.strip().lower() in ("true", "on", "yes", "y", "1")


@dataclass(frozen=True, slots=True)
class RailConfig:
    budget: int = 3  # failovers allowed per window
    budget_window_s: float = 3600.0
    cooldown_s: float = 300.0  # minimum time between two failovers
    freeze_file: Path | None = DEFAULT_FREEZE_FILE  # exists: frozen (None: no file switch)
    freeze_attribute: str = "sipwatch-freeze"  # node attribute; true on this node: frozen

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ValueError("budget must be >= 0")
        if self.budget_window_s <= 0 or self.cooldown_s < 0:
            raise ValueError("budget_window_s must be > 0 and cooldown_s >= 0")
        if not self.freeze_attribute:
            raise ValueError("freeze_attribute must not be empty")

    def file_frozen(self) -> str | None:
        """Why the freeze file freezes us, or None. Checked before any tool runs, so it works
        while Pacemaker's tools hang."""
        if self.freeze_file is not None and self.freeze_file.exists():
            return f"freeze file {self.freeze_file} exists"
        return None


class RailState:
    """When the past failovers happened (monotonic seconds). One per agent; share one between
    agents to count their failovers together. Lost on restart, like any in-memory budget."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def _expire(self, config: RailConfig, now: float) -> None:
        while self._times and now - self._times[0] >= config.budget_window_s:
            self._times.popleft()

    def used(self, config: RailConfig, now: float) -> int:
        self._expire(config, now)
        return len(self._times)

    def refusal(self, config: RailConfig, now: float) -> tuple[Rail, str] | None:
        """The rail that forbids a failover at `now`, with why; None when one is allowed."""
        self._expire(config, now)
        if self._times and now - self._times[-1] < config.cooldown_s:
            left = config.cooldown_s - (now - self._times[-1])
            return (
                Rail.COOLDOWN,
                f"last failover {now - self._times[-1]:.0f} s ago, {left:.0f} s of cooldown left",
            )
        if len(self._times) >= config.budget:
            return Rail.BUDGET, (
                f"{len(self._times)} failover(s) in the last {config.budget_window_s:.0f} s, "
                f"budget {config.budget}"
            )
        return None

    def record(self, now: float) -> None:
        self._times.append(now)
