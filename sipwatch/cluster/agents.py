"""The cluster agent interface, and its Pacemaker implementations.

Owns: ClusterAgent (the one interface the daemon and the CLI use), the pipeline that enforces
every rail before an action and undoes a half-applied change, and the implementations:

    HealthAttributeAgent  publish `#health-sipwatch` = green/yellow/red on this node and let
                          `node-health-strategy` (migrate-on-red, only-green, ...) move the
                          resources. The default: Pacemaker decides, sipwatch only reports.
    BanAgent              red: `crm_resource --ban` the group off this node, always with a
                          lifetime; green: clear that ban and expired ones.
    StandbyAgent          red: put this node in standby until reboot (transient); green: clear.
    DryRunAgent           wraps any of them: runs the same pipeline with `dry_run=True`
                          (every rail, reads the CIB, simulates on a private copy) and
                          reports what would be done. Changes nothing.

Every method returns an AuditRecord and never raises. Every record but "unchanged" goes to the
agent's AuditLog and to the `sipwatch.cluster` logger. Must not know: command lines
(pacemaker.py), how a verdict is reached (sipwatch.policy).

One action (`PacemakerAgent.run`), in this order — the first rail that says no ends it:
    own_node → freeze file → snapshot (`cibadmin --query`, saved in a private temp dir)
    → this node joined (else "waiting": the cluster stack is still starting; bounded)
    → freeze in the CIB → quorum → plan (already as asked: "unchanged", judged where the
      change is written and read back: attrd for the health attribute on a live cluster)
    → degrading actions only: simulate the copy as it is; not_active; apply the change to the
      copy; simulate again; last_node; if the resource leaves this node: cooldown, budget
    → dry run stops here ("would") → apply for real and read it back; on any failure undo what
      may have been applied, and report "failed" (the undo's outcome is in `detail`)
    → a failover only: simulate the CIB as it is now; if the resource would run nowhere (the
      CIB changed between the read and the write), undo and report "failed".
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from tenacity import Retrying, retry_if_result, stop_after_attempt, stop_after_delay, wait_fixed

from sipwatch.cluster.audit import ActionOutcome, AuditLog, AuditRecord
from sipwatch.cluster.fencing import FencingState, read_state
from sipwatch.cluster.pacemaker import (
    NOT_CONNECTED_RCS,
    Ban,
    Change,
    CibSnapshot,
    ClearBan,
    ClearExpired,
    NodeView,
    PacemakerTools,
    SetNodeAttribute,
)
from sipwatch.cluster.rails import Rail, RailConfig, RailState, is_true
from sipwatch.errors import ClusterError
from sipwatch.model import Verdict

__all__ = [
    "AGENTS",
    "HEALTH_ATTRIBUTE",
    "Action",
    "BanAgent",
    "ClusterAgent",
    "ClusterStatus",
    "DryRunAgent",
    "HealthAttributeAgent",
    "PacemakerAgent",
    "StandbyAgent",
    "make_agent",
]

HEALTH_ATTRIBUTE = "#health-sipwatch"
#: How long a node whose cluster stack is still joining is waited for (quietly: "waiting",
#: reported once) before that becomes a failure. A rebooted node's corosync + Pacemaker
#: usually join in seconds; dc-deadtime (20 s by default) bounds a fresh cluster's start.
JOIN_WAIT_S = 120.0
_log = logging.getLogger("sipwatch.cluster")
_RANK = {"green": 0, "yellow": 1, "red": 2}


def _rank(value: str | None) -> int:
    return _RANK.get(value or "green", 0)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """What an agent sees of the cluster, read-only. `ok` False: `error` says which tool
    failed; the other fields are then unknown."""

    node: str
    resource: str
    agent: str
    mode: str
    ok: bool
    error: str = ""
    have_quorum: bool | None = None
    frozen: str | None = None
    running_on: tuple[str, ...] = ()
    health: str | None = None  # this node's published health attribute
    banned: bool = False  # an unexpired ban of the resource from this node
    standby: bool = False  # a transient standby of this node
    nodes: tuple[NodeView, ...] = ()
    failovers_used: int = 0
    fencing: FencingState | None = None  # stonith-enabled and the fencing history

    @property
    def active_here(self) -> bool:
        return self.node in self.running_on

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "resource": self.resource,
            "agent": self.agent,
            "mode": self.mode,
            "ok": self.ok,
            "error": self.error,
            "have_quorum": self.have_quorum,
            "frozen": self.frozen,
            "running_on": list(self.running_on),
            "active_here": self.active_here,
            "health": self.health,
            "banned": self.banned,
            "standby": self.standby,
            "failovers_used": self.failovers_used,
            "fencing": self.fencing.to_dict() if self.fencing is not None else None,
            "fencing_summary": self.fencing.summary() if self.fencing is not None else "",
            "nodes": [
                {
                    "name": n.name,
                    "online": n.online,
                    "standby": n.standby,
                    "maintenance": n.maintenance,
                    "health": n.health,
                }
                for n in self.nodes
            ],
        }


@runtime_checkable
class ClusterAgent(Protocol):
    """Turns this node's verdict into cluster changes, safely. Methods never raise."""

    @property
    def node(self) -> str: ...

    @property
    def resource(self) -> str: ...

    @property
    def audit(self) -> AuditLog: ...

    def publish_health(
        self, verdict: Verdict, *, about: str | None = None, reason: str = ""
    ) -> AuditRecord:
        """This node's verdict (`about`: the node it is about; another node's is refused)."""
        ...

    def move_away(self, reason: str, *, about: str | None = None) -> AuditRecord:
        """Get the resource off this node (the agent's way: red health, ban, standby)."""
        ...

    def clear(self) -> AuditRecord:
        """Undo everything this agent put in the cluster for this node."""
        ...

    def status(self) -> ClusterStatus: ...


@dataclass(frozen=True, slots=True)
class _Plan:
    changes: tuple[Change, ...] = ()
    undo: tuple[Change, ...] = ()
    degrading: bool = False  # may move or stop the resource: simulate, rate-limit
    requires_active: bool = False  # only when the resource runs here

    @property
    def summary(self) -> str:
        return "; ".join(c.describe() for c in self.changes) or "nothing to change"


@dataclass(frozen=True, slots=True)
class Action:
    """One request to an agent, ready for the pipeline (`PacemakerAgent.run`): the action's
    name as audited (publish_health, move_away, clear), the plan it makes from a snapshot of
    the CIB, the node the caller says it is about, and the caller's reason."""

    name: str
    planner: Callable[[CibSnapshot], _Plan]
    about: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Result:
    """How one pass of the pipeline ended: what goes into the audit record."""

    outcome: ActionOutcome
    summary: str
    detail: str = ""
    rail: Rail | None = None
    failover: bool = False


class _NotReady(Exception):
    """This node's cluster stack cannot take a change yet (still joining)."""


class _Refused(Exception):
    def __init__(self, rail: Rail, detail: str, *, failover: bool = False) -> None:
        super().__init__(detail)
        self.rail = rail
        self.detail = detail
        self.failover = failover


class PacemakerAgent:
    """The action pipeline shared by the Pacemaker agents; subclasses supply the plans."""

    kind: ClassVar[str] = ""

    def __init__(
        self,
        tools: PacemakerTools,
        *,
        node: str,
        resource: str,
        rails: RailConfig | None = None,
        state: RailState | None = None,
        audit: AuditLog | None = None,
        attribute: str = HEALTH_ATTRIBUTE,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utc_now,
        join_wait_s: float = JOIN_WAIT_S,
    ) -> None:
        if not node or not resource:
            raise ValueError("node and resource must be named")
        self.tools = tools
        self._node = node
        self._resource = resource
        self.rails = rails if rails is not None else RailConfig()
        self.state = state if state is not None else RailState()
        self._audit = audit if audit is not None else AuditLog()
        self.attribute = attribute
        self._clock = clock
        self._wall = wall
        self.join_wait_s = join_wait_s
        self._waiting_since: float | None = None  # since when this node is still joining

    def __repr__(self) -> str:
        return f"{type(self).__name__}(node={self._node!r}, resource={self._resource!r})"

    @property
    def node(self) -> str:
        return self._node

    @property
    def resource(self) -> str:
        return self._resource

    @property
    def audit(self) -> AuditLog:
        return self._audit

    # --- the interface ------------------------------------------------------------------------

    def publish_health(
        self, verdict: Verdict, *, about: str | None = None, reason: str = ""
    ) -> AuditRecord:
        return self.run(self.publish_action(verdict, about=about, reason=reason))

    def move_away(self, reason: str, *, about: str | None = None) -> AuditRecord:
        return self.run(self.move_away_action(reason, about=about))

    def clear(self) -> AuditRecord:
        return self.run(self.clear_action())

    # --- actions: what each interface method asks of the pipeline -----------------------------

    def publish_action(
        self, verdict: Verdict, *, about: str | None = None, reason: str = ""
    ) -> Action:
        return Action("publish_health", self._publish_planner(verdict), about, reason)

    def move_away_action(self, reason: str, *, about: str | None = None) -> Action:
        return Action("move_away", self._plan_move_away, about, reason)

    def clear_action(self) -> Action:
        return Action("clear", self._plan_clear)

    def status(self) -> ClusterStatus:
        node, resource, kind = self._node, self._resource, self.kind
        mode = str(self.tools.mode)
        try:
            with tempfile.TemporaryDirectory(prefix="sipwatch-cib-") as tmp:
                snap = self.tools.snapshot(Path(tmp))
                sim = self.tools.simulate(snap.path)
        except ClusterError as exc:
            return ClusterStatus(node, resource, kind, mode, ok=False, error=exc.summary)
        view = sim.current.resource(self._resource)
        ban = snap.bans(self._resource).get(self._node)
        return ClusterStatus(
            node,
            resource,
            kind,
            mode,
            ok=True,
            have_quorum=snap.have_quorum,
            frozen=self.rails.file_frozen() or self._cib_frozen(snap),
            running_on=tuple(sorted(view.running_on)) if view else (),
            health=self._health_or_cib(snap),
            banned=ban is not None and ban.active(self._wall()),
            standby=is_true(snap.transient_attribute(self._node, "standby")),
            nodes=sim.current.nodes,
            failovers_used=self.state.used(self.rails, self._clock()),
            fencing=read_state(snap.cluster_property, self.tools.fence_history),
        )

    # --- plans (subclasses) -------------------------------------------------------------------

    def _publish_planner(self, verdict: Verdict) -> Callable[[CibSnapshot], _Plan]:
        raise NotImplementedError

    def _plan_move_away(self, snap: CibSnapshot) -> _Plan:
        raise NotImplementedError

    def _plan_clear(self, snap: CibSnapshot) -> _Plan:
        raise NotImplementedError

    def _health_now(self) -> str | None:
        """The health attribute as it is written and read back (`holds()`): on a live cluster
        pacemaker-attrd's value, the one Pacemaker acts on. Never the CIB snapshot's status
        section: attrd and the CIB can disagree (a rejoining node's attrd synced from peers
        that never had the value while the CIB kept it), and judging "already as asked" from
        the CIB then never repairs the attribute."""
        return self.tools.node_attribute(self._node, self.attribute, attrd=True)

    def _health_or_cib(self, snap: CibSnapshot) -> str | None:
        try:
            return self._health_now()
        except ClusterError:
            return snap.transient_attribute(self._node, self.attribute)

    def _plan_health(self, verdict: Verdict) -> Callable[[CibSnapshot], _Plan]:
        """Set the health attribute (the HealthAttributeAgent's one change)."""

        def plan(snap: CibSnapshot) -> _Plan:
            current = self._health_now()
            if current == verdict.value:
                return _Plan()
            return _Plan(
                changes=(SetNodeAttribute(self._node, self.attribute, verdict.value, attrd=True),),
                undo=(SetNodeAttribute(self._node, self.attribute, current, attrd=True),),
                degrading=_rank(verdict.value) > _rank(current),
            )

        return plan

    # --- the pipeline -------------------------------------------------------------------------

    def run(self, action: Action, *, dry_run: bool = False) -> AuditRecord:
        """The pipeline (module docstring): every rail, then the change, or with `dry_run`
        what would be changed. Returns the audit record; never raises."""
        started = self._clock()
        try:
            result = self._attempt(action, dry_run=dry_run)
        except _NotReady as why:
            return self._waiting(action, started, str(why), dry_run=dry_run)
        except Exception as exc:  # the contract: a value, never an exception, to the caller
            _log.exception("event=cluster_action_crashed action=%s", action.name)
            result = _Result(
                ActionOutcome.FAILED,
                _default_summary(action),
                f"internal error: {type(exc).__name__}",
            )
        return self._record(action, started, result, dry_run=dry_run)

    def _attempt(self, action: Action, *, dry_run: bool) -> _Result:
        """One pass: a refusal, a tool failure, or the plan's outcome. Raises _NotReady."""
        planned: list[_Plan] = []
        try:
            plan, failover = self._rails(action, planned)
        except _Refused as refusal:
            summary = planned[0].summary if planned else _default_summary(action)
            return _Result(
                ActionOutcome.REFUSED, summary, refusal.detail, refusal.rail, refusal.failover
            )
        except ClusterError as exc:
            summary = planned[0].summary if planned else _default_summary(action)
            return _Result(ActionOutcome.FAILED, summary, exc.summary)
        if not plan.changes:
            return _Result(ActionOutcome.UNCHANGED, plan.summary, action.detail)
        if dry_run:
            return _Result(ActionOutcome.WOULD, plan.summary, action.detail, failover=failover)
        error = self._commit(plan)
        if not error and failover:
            error = self._recheck(plan)
        if error:
            return _Result(ActionOutcome.FAILED, plan.summary, error, failover=failover)
        if failover:
            self.state.record(self._clock())
        return _Result(ActionOutcome.DONE, plan.summary, action.detail, failover=failover)

    def _rails(self, action: Action, planned: list[_Plan]) -> tuple[_Plan, bool]:
        """The rails that need no snapshot, then those that do (`_check`, on a private copy
        of the CIB that is removed afterwards)."""
        if action.about is not None and action.about != self._node:
            raise _Refused(
                Rail.OWN_NODE,
                f"the verdict is about {action.about}, this agent acts for {self._node} only",
            )
        frozen = self.rails.file_frozen()
        if frozen:
            raise _Refused(Rail.FREEZE, frozen)
        with tempfile.TemporaryDirectory(prefix="sipwatch-cib-") as tmp:
            return self._check(action.planner, Path(tmp), planned)

    def _check(
        self, planner: Callable[[CibSnapshot], _Plan], workdir: Path, planned: list[_Plan]
    ) -> tuple[_Plan, bool]:
        """Every rail that needs the cluster's state. Returns the plan (also put in `planned`)
        and whether it is a failover (moves the resource off this node); raises _Refused or
        ClusterError."""
        try:
            snap = self.tools.snapshot(workdir)
        except ClusterError as exc:
            if exc.rc in NOT_CONNECTED_RCS:
                raise _NotReady(f"the CIB is not reachable yet ({exc.summary})") from None
            raise
        if not snap.has_node(self._node):
            raise ClusterError(f"node {self._node} is not in the CIB")
        if not snap.joined(self._node):
            raise _NotReady(f"{self._node} has not joined the cluster yet")
        if self._waiting_since is not None:
            _log.info(
                "event=cluster_joined node=%s waited_s=%.1f",
                self._node,
                self._clock() - self._waiting_since,
            )
            self._waiting_since = None
        frozen = self._cib_frozen(snap)
        if frozen:
            raise _Refused(Rail.FREEZE, frozen)
        if not snap.have_quorum:
            raise _Refused(Rail.QUORUM, "this partition has no quorum")
        plan = planner(snap)
        planned.append(plan)
        if not plan.changes or not plan.degrading:
            return plan, False
        before = self.tools.simulate(snap.path)
        now_view = before.current.resource(self._resource)
        settled = before.revised.resource(self._resource)
        if now_view is None or settled is None:
            raise ClusterError(f"resource {self._resource} is not in the CIB")
        here = self._node in now_view.running_on
        if plan.requires_active and not here:
            where = ", ".join(sorted(now_view.running_on)) or "nowhere"
            raise _Refused(
                Rail.NOT_ACTIVE,
                f"{self._resource} runs on {where}, not here: nothing to move away",
            )
        for change in plan.changes:
            self.tools.apply(change, cib_file=snap.path)
        after_view = self.tools.simulate(snap.path).revised.resource(self._resource)
        if after_view is None:
            raise ClusterError(f"resource {self._resource} vanished from the simulation")
        failover = here and self._node not in after_view.running_on
        if settled.running and not after_view.running:
            raise _Refused(
                Rail.LAST_NODE,
                f"{self._resource} would stop: no other node can run it "
                "(offline, standby, unhealthy or banned)",
                failover=failover,
            )
        if failover:
            refusal = self.state.refusal(self.rails, self._clock())
            if refusal is not None:
                raise _Refused(refusal[0], refusal[1], failover=True)
        return plan, failover

    def _cib_frozen(self, snap: CibSnapshot) -> str | None:
        if is_true(snap.cluster_property("maintenance-mode")):
            return "the cluster is in maintenance-mode"
        name = self.rails.freeze_attribute
        if is_true(snap.node_attribute(self._node, name)) or is_true(
            snap.transient_attribute(self._node, name)
        ):
            return f"node attribute {name} is true on {self._node}"
        if is_true(snap.node_attribute(self._node, "maintenance")) or is_true(
            snap.transient_attribute(self._node, "maintenance")
        ):
            return f"node {self._node} is in maintenance"
        return None

    def _commit(self, plan: _Plan) -> str:
        """Apply the plan for real and read it back. "" on success, else what failed and what
        the undo did."""
        try:
            for change in plan.changes:
                self.tools.apply(change)
            for change in plan.changes:
                if not self._holds(change):
                    raise ClusterError(f"{change.describe()}: not in effect when read back")
        except ClusterError as exc:
            return f"{exc.summary}; {self._undo(plan)}"
        return ""

    def _recheck(self, plan: _Plan) -> str:
        """The rails judged the snapshot; the CIB may have changed before the write (the
        other nodes put in standby or banned that instant), and no Pacemaker tool writes only
        if the CIB is still as read. So after a failover is written, simulate the CIB as it
        now is: if the resource would run nowhere, undo. "" when it still runs somewhere
        (or the check cannot be made: the rails passed, the change stays, logged)."""
        try:
            with tempfile.TemporaryDirectory(prefix="sipwatch-cib-") as tmp:
                snap = self.tools.snapshot(Path(tmp))
                view = self.tools.simulate(snap.path).revised.resource(self._resource)
        except ClusterError as exc:
            _log.warning("event=cluster_recheck_failed error=%r", exc.summary)
            return ""
        if view is None or view.running:
            return ""
        return (
            f"{self._resource} would stop: the CIB changed between read and write "
            f"(no other node can run it now); {self._undo(plan)}"
        )

    def _holds(self, change: Change) -> bool:
        # Live attribute writes land in pacemaker-attrd asynchronously: a few quick looks.
        retrying = Retrying(
            stop=stop_after_attempt(5) | stop_after_delay(2.0),
            wait=wait_fixed(0.1),
            retry=retry_if_result(lambda held: not held),
            retry_error_callback=lambda state: False,
        )
        held: bool = retrying(self.tools.holds, change)
        return held

    def _undo(self, plan: _Plan) -> str:
        if not plan.undo:
            return "nothing to undo"
        try:
            for change in plan.undo:
                self.tools.apply(change)
            for change in plan.undo:
                if not self.tools.holds(change):
                    return f"undo incomplete: {change.describe()} not in effect"
        except ClusterError as exc:
            return f"undo failed: {exc.summary}"
        return "undone"

    def _waiting(self, action: Action, started: float, why: str, *, dry_run: bool) -> AuditRecord:
        """A node still joining is normal at boot: "waiting", logged once, retried by the
        caller. Past `join_wait_s` it is a failure (logged, like any failure)."""
        now = self._clock()
        first = self._waiting_since is None
        if self._waiting_since is None:
            self._waiting_since = now
        waited = now - self._waiting_since
        summary = _default_summary(action)
        if waited > self.join_wait_s:
            failed = _Result(ActionOutcome.FAILED, summary, f"{why}, for {waited:.0f} s")
            return self._record(action, started, failed, dry_run=dry_run)
        waiting = _Result(ActionOutcome.WAITING, summary, why)
        record = self._record(action, started, waiting, dry_run=dry_run, announce=False)
        if first:
            self._audit.append(record)
            _log.warning(
                "event=cluster_waiting node=%s action=%s detail=%r bound_s=%.0f",
                self._node,
                action.name,
                why,
                self.join_wait_s,
            )
        return record

    def _record(
        self,
        action: Action,
        started: float,
        result: _Result,
        *,
        dry_run: bool,
        announce: bool = True,
    ) -> AuditRecord:
        """The audit record of one pass. With `announce` (all but "waiting", which reports
        itself once) a record other than "unchanged" goes to the audit log and the log."""
        record = AuditRecord(
            at=self._wall(),
            action=action.name,
            agent=self.kind,
            node=self._node,
            resource=self._resource,
            result=result.outcome,
            summary=result.summary,
            rail=result.rail,
            detail=result.detail,
            dry_run=dry_run,
            failover=result.failover,
            duration_s=max(0.0, self._clock() - started),
        )
        if not announce or result.outcome is ActionOutcome.UNCHANGED:
            return record
        self._audit.append(record)
        level = logging.INFO if record.ok else logging.WARNING
        _log.log(
            level,
            "event=cluster_action action=%s agent=%s node=%s resource=%s result=%s rail=%s "
            "dry_run=%s failover=%s summary=%r detail=%r",
            action.name,
            self.kind,
            self._node,
            self._resource,
            result.outcome,
            result.rail or "-",
            dry_run,
            result.failover,
            result.summary,
            result.detail,
        )
        return record


def _default_summary(action: Action) -> str:
    """What a record says was asked when no plan was made (a refusal before planning)."""
    return action.name.replace("_", " ")


class HealthAttributeAgent(PacemakerAgent):
    """Publish `#health-sipwatch`; Pacemaker's node-health-strategy does the moving.

    migrate-on-red moves resources off a red node (yellow is ignored), only-green off a
    yellow or red one. move_away publishes red; clear deletes the attribute.
    """

    kind = "health_attribute"

    def _publish_planner(self, verdict: Verdict) -> Callable[[CibSnapshot], _Plan]:
        return self._plan_health(verdict)

    def _plan_move_away(self, snap: CibSnapshot) -> _Plan:
        return self._plan_health(Verdict.RED)(snap)

    def _plan_clear(self, snap: CibSnapshot) -> _Plan:
        if self._health_now() is None:
            return _Plan()
        return _Plan(changes=(SetNodeAttribute(self._node, self.attribute, None, attrd=True),))


class _MovingAgent(PacemakerAgent):
    """An agent that moves the resource itself on the verdicts in `act_on` (default red) and
    undoes that on green; other verdicts change nothing."""

    def __init__(
        self,
        tools: PacemakerTools,
        *,
        act_on: frozenset[Verdict] = frozenset({Verdict.RED}),
        **kwargs: Any,
    ) -> None:
        super().__init__(tools, **kwargs)
        if Verdict.GREEN in act_on:
            raise ValueError("act_on cannot contain green")
        self.act_on = act_on

    def _publish_planner(self, verdict: Verdict) -> Callable[[CibSnapshot], _Plan]:
        if verdict in self.act_on:
            return self._plan_move_away
        if verdict is Verdict.GREEN:
            return self._plan_clear
        return _nothing


class BanAgent(_MovingAgent):
    """Ban the resource from this node (always with a lifetime) on the verdicts in `act_on`
    (default red); clear the ban (and expired ones) on green. Other verdicts change nothing."""

    kind = "ban"

    def __init__(
        self,
        tools: PacemakerTools,
        *,
        lifetime_s: float = 1800.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(tools, **kwargs)
        if lifetime_s < 60:
            raise ValueError("lifetime_s must be >= 60: a ban always has a real lifetime")
        self.lifetime_s = lifetime_s

    def _plan_move_away(self, snap: CibSnapshot) -> _Plan:
        ban = snap.bans(self._resource).get(self._node)
        if ban is not None and ban.active(self._wall()):
            return _Plan()
        return _Plan(
            changes=(Ban(self._resource, self._node, self.lifetime_s),),
            undo=(ClearBan(self._resource, self._node),),
            degrading=True,
            requires_active=True,
        )

    def _plan_clear(self, snap: CibSnapshot) -> _Plan:
        bans = snap.bans(self._resource)
        now = self._wall()
        changes: list[Change] = []
        if self._node in bans:
            changes.append(ClearBan(self._resource, self._node))
        if any(not b.active(now) for node, b in bans.items() if node != self._node):
            changes.append(ClearExpired(self._resource))
        return _Plan(changes=tuple(changes))


class StandbyAgent(_MovingAgent):
    """Put this node in standby until it reboots (a transient `standby=on`) on the verdicts in
    `act_on` (default red); clear that transient standby on green. An operator's permanent
    standby is never touched."""

    kind = "standby"

    def _plan_move_away(self, snap: CibSnapshot) -> _Plan:
        current = snap.transient_attribute(self._node, "standby")
        if is_true(current):
            return _Plan()
        return _Plan(
            changes=(SetNodeAttribute(self._node, "standby", "on"),),
            undo=(SetNodeAttribute(self._node, "standby", current),),
            degrading=True,
            requires_active=True,
        )

    def _plan_clear(self, snap: CibSnapshot) -> _Plan:
        if snap.transient_attribute(self._node, "standby") is None:
            return _Plan()
        return _Plan(changes=(SetNodeAttribute(self._node, "standby", None),))


def _nothing(snap: CibSnapshot) -> _Plan:
    return _Plan()


class DryRunAgent:
    """Any Pacemaker agent, with every rail checked and nothing changed: each call reports
    what the wrapped agent would do ("would") or which rail would refuse it. Budget and
    cooldown are checked but not consumed."""

    def __init__(self, inner: PacemakerAgent) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"DryRunAgent({self.inner!r})"

    @property
    def node(self) -> str:
        return self.inner.node

    @property
    def resource(self) -> str:
        return self.inner.resource

    @property
    def audit(self) -> AuditLog:
        return self.inner.audit

    def publish_health(
        self, verdict: Verdict, *, about: str | None = None, reason: str = ""
    ) -> AuditRecord:
        return self.inner.run(
            self.inner.publish_action(verdict, about=about, reason=reason), dry_run=True
        )

    def move_away(self, reason: str, *, about: str | None = None) -> AuditRecord:
        return self.inner.run(self.inner.move_away_action(reason, about=about), dry_run=True)

    def clear(self) -> AuditRecord:
        return self.inner.run(self.inner.clear_action(), dry_run=True)

    def status(self) -> ClusterStatus:
        return self.inner.status()


AGENTS: dict[str, type[PacemakerAgent]] = {
    HealthAttributeAgent.kind: HealthAttributeAgent,
    BanAgent.kind: BanAgent,
    StandbyAgent.kind: StandbyAgent,
}


def make_agent(
    kind: str,
    tools: PacemakerTools,
    *,
    node: str,
    resource: str,
    dry_run: bool = False,
    **kwargs: Any,
) -> ClusterAgent:
    """An agent by name ("health_attribute", "ban", "standby"), wrapped in DryRunAgent when
    `dry_run`. Extra keyword arguments go to the agent (rails, state, audit, lifetime_s...)."""
    try:
        cls = AGENTS[kind]
    except KeyError:
        raise ValueError(f"unknown cluster agent {kind!r} (one of {', '.join(AGENTS)})") from None
    agent = cls(tools, node=node, resource=resource, **kwargs)
    return DryRunAgent(agent) if dry_run else agent
