"""`sipwatch run`: the long-running service beside the PBX.

Owns: scheduling each probe on its own interval (with jitter, a deadline shorter than the
interval, all concurrent in one TaskGroup, a slow probe never delaying another), feeding every
result to the policy, acting on decisions through the cluster agent (serialised, off the event
loop, dry-run unless configured), re-probing at once when the VIP arrives or leaves, and the
state the HTTP endpoints read (last results, history, latency statistics, actions).
Must not know: HTTP (http.py), Pacemaker command lines (cluster/), probe internals (probes/).

Time: `clock` (monotonic seconds) is injected; the policy never reads a clock itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sipwatch.model import Decision, Outcome, ProbeResult, Verdict
from sipwatch.policy import Policy, PolicyState, decide, initial_state, observe
from sipwatch.probes import kind_of, run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.kind import ProbeSpecBase, Watch
from sipwatch.trace import Trace, tracing

if TYPE_CHECKING:
    from sipwatch.cluster.agents import ClusterAgent
    from sipwatch.cluster.audit import AuditRecord

log = logging.getLogger("sipwatch.daemon")

#: The deadline of a probe run is at most this share of its interval, so a run always ends
#: before the next one is due.
DEADLINE_SHARE = 0.8
#: How often a verdict whose hand-over to the cluster agent did not take effect is retried.
ACTION_RETRY_S = 5.0
#: A failure on the active node is logged on each of its first runs (it builds up to a
#: failover), then summarised like any outcome that stays: every RESULT_SUMMARY_S.
ACTIVE_FAILURES_LOGGED = 5
RESULT_SUMMARY_S = 600.0
#: At most this many confirm runs (see Daemon._next_delay) per probe in any minute.
CONFIRM_RUNS_PER_MIN = 20
#: ... and while the agent says this node's cluster stack is still joining ("waiting"): a
#: rebooted node publishes its health within about a second of joining.
JOIN_RETRY_S = 1.0


class DaemonObserver(Protocol):
    """What the daemon tells the rest of the process (metrics, the verdict file): called on
    the event loop, must not block, must not raise."""

    def on_result(self, result: ProbeResult, now: float) -> None: ...

    def on_decision(self, decision: Decision) -> None:
        """The verdict changed (also called once per /metrics scrape by the HTTP side)."""
        ...

    def on_action(self, record: AuditRecord) -> None:
        """The cluster agent handled a verdict (any result, "unchanged" included)."""
        ...


class SideTask(NamedTuple):
    """A watcher that runs beside the probes for as long as the daemon runs (the quorum
    guard, the verdict file): `run` is called with the daemon's stop event."""

    name: str
    run: Callable[[asyncio.Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    jitter: float = 0.1  # each interval is stretched by up to this share, at random
    history: int = 50  # results kept per probe
    failure_history: int = 200  # failed results kept longer, per probe
    latency_window: int = 100  # RTTs kept per probe for p95
    act: bool = True  # hand decisions to the cluster agent (which may itself be dry-run)
    # Hand the current verdict over again this often even when the last hand-over worked:
    # a transient attribute can be lost behind our back (attrd restarted, or a rejoining
    # node's attrd synced from peers that never had it); unchanged values are not logged.
    reassert_s: float = 30.0


@dataclass(slots=True)
class ProbeStats:
    """What /status shows for one probe beyond its last result."""

    runs: int = 0
    failures: int = 0
    ewma_ms: float | None = None
    rtts: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    recent: deque[ProbeResult] = field(default_factory=lambda: deque(maxlen=50))
    failed: deque[ProbeResult] = field(default_factory=lambda: deque(maxlen=200))
    last_at_wall: float | None = None
    outcome: Outcome | None = None  # the current outcome, and how long it has stood:
    streak: int = 0  # runs in a row
    since: float = 0.0  # monotonic seconds
    summarised_at: float = 0.0  # when it was last logged
    fail_streak: int = 0  # failed runs in a row (what `fall` counts)
    confirm_runs: deque[float] = field(default_factory=deque)  # when confirm runs were made

    def p95_ms(self) -> float | None:
        if not self.rtts:
            return None
        ordered = sorted(self.rtts)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class Daemon:
    """Probes, policy state and actions of one node. Create, then `await run(stop)`."""

    def __init__(
        self,
        specs: Sequence[ProbeSpecBase],
        ctx: ProbeContext,
        policy: Policy,
        *,
        agent: ClusterAgent | None = None,
        options: DaemonOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        observers: Sequence[DaemonObserver] = (),
        side_tasks: Sequence[SideTask] = (),
        policy_name: str = "",
    ) -> None:
        self.specs = list(specs)
        self.ctx = ctx
        self.policy = policy
        self.policy_name = policy_name
        self.agent = agent
        self.options = options or DaemonOptions()
        self.clock = clock
        self.wall = wall
        self.observers = list(observers)
        # What /status says about the config this daemon runs (e.g. its sha256, so that
        # `sipwatch check` knows the verdict is about the same config).
        self.meta: dict[str, Any] = {}
        # More sections of /status, each read when /status is asked (the fencing watch's)
        self.status_sections: dict[str, Callable[[], Any]] = {}
        self.started_wall = wall()
        self.state: PolicyState = initial_state(clock())
        self.decision: Decision = decide(self.state, policy, clock())
        self.last: dict[str, ProbeResult] = {}
        self.stats: dict[str, ProbeStats] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._act_lock = asyncio.Lock()
        self._acted: Verdict | None = None
        self._acted_at = 0.0
        self._acted_ok = True
        self._acted_waiting = False
        self._last_logged: tuple[str, ...] | None = None  # the last event=action line's gist
        self._tasks: set[asyncio.Task[None]] = set()
        self.side_tasks = list(side_tasks)
        self._watches: dict[str, Watch] = {}  # probe name -> its kind's wake-up source
        self.traces: dict[str, Trace] = {}  # each probe's last run, for /probes/NAME/trace
        self._rng = random.Random()

    def adopt(self, old: Daemon) -> None:
        """Take over what a previous daemon (before a config reload) learnt about probes
        that still exist: policy state, probe memory, statistics, the last action taken."""
        from dataclasses import replace

        names = {s.name for s in self.specs}
        self.state = old.state.retain(names)
        self.ctx = replace(self.ctx, memory=old.ctx.memory)
        self.ctx.memory.retain(names)
        self.last = {k: v for k, v in old.last.items() if k in names}
        self.stats = {k: v for k, v in old.stats.items() if k in names}
        self.traces = {k: v for k, v in old.traces.items() if k in names}
        self.started_wall = old.started_wall
        self._acted = old._acted
        self._acted_at, self._acted_ok = old._acted_at, old._acted_ok
        self._acted_waiting, self._last_logged = old._acted_waiting, old._last_logged
        self.decision = decide(self.state, self.policy, self.clock())

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run every probe until `stop` is set; in-flight probes finish (bounded by their
        deadlines) before this returns."""
        log.info("event=daemon_started probes=%d policy=%s", len(self.specs), self.policy_name)
        async with asyncio.TaskGroup() as group:
            for spec in self.specs:
                self._wake[spec.name] = asyncio.Event()
                group.create_task(self._probe_loop(spec, stop), name=f"probe:{spec.name}")
            for spec in self.specs:  # the kinds' wake-up sources (VIP moves, PBX exits)
                wake = kind_of(spec).wake
                if wake is not None:
                    watch = self._watches[spec.name] = wake(spec, self.wake_all)
                    side = SideTask(f"wake:{spec.name}", watch.run)
                    group.create_task(self._guarded(side, stop), name=side.name)
            for side in self.side_tasks:
                group.create_task(self._guarded(side, stop), name=side.name)
            await stop.wait()
            for event in self._wake.values():
                event.set()  # sleeping loops notice `stop` at once
        self._watches.clear()
        if self._tasks:  # actions in flight: let them finish (each call has its own timeout)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("event=daemon_stopped")

    @staticmethod
    async def _guarded(side: SideTask, stop: asyncio.Event) -> None:
        """A side task's bug is logged; it never takes the probes down with it."""
        try:
            await side.run(stop)
        except Exception:
            log.exception("event=side_task_failed task=%s", side.name)

    def wake_all(self, why: str) -> None:
        """Run every probe now (e.g. the VIP just arrived): a node that just received the
        VIP is verified at once, not at its next interval."""
        log.info("event=reprobe_all reason=%s", why)
        for event in self._wake.values():
            event.set()

    async def _probe_loop(self, spec: ProbeSpecBase, stop: asyncio.Event) -> None:
        wake = self._wake[spec.name]
        # Spread the first runs over the first interval so probes don't all fire together.
        delay = self._rng.uniform(0, min(spec.interval_s, 1.0) * self.options.jitter)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            wake.clear()
            if stop.is_set():
                return
            result = await self._run_one(spec)
            self.record(result)
            delay = self._next_delay(spec, result)

    def _next_delay(self, spec: ProbeSpecBase, result: ProbeResult) -> float:
        """When the probe runs next: its interval (stretched by jitter), or — while a failure
        is not yet confirmed — after the policy's `confirm_interval_s` (HAProxy's fastinter):
        a confirmed failure then costs about `fall` x the probe's deadline, not `fall` x
        its interval. One lost datagram still never fails a node: UDP retransmissions inside
        each run cover it, and `fall` runs in a row must fail. Bounded: only while the failure
        streak is below `fall`, and at most CONFIRM_RUNS_PER_MIN confirm runs a minute per
        probe, so a flapping target cannot become a probe storm."""
        stretch = 1 + self._rng.uniform(0, self.options.jitter)
        normal = float(spec.interval_s) * stretch
        stats = self.stats.get(result.probe)
        rule = self.policy.rule_for(result.probe, result.kind)
        if (
            stats is None
            or rule.confirm_interval_s <= 0
            or not 0 < stats.fail_streak < rule.fall
            or (rule.on_standby == "ignore" and not self.decision.active)
        ):
            return normal
        now = self.clock()
        recent = stats.confirm_runs
        while recent and now - recent[0] >= 60.0:
            recent.popleft()
        if len(recent) >= CONFIRM_RUNS_PER_MIN:
            return normal
        recent.append(now)
        return min(rule.confirm_interval_s, normal)

    async def _run_one(self, spec: ProbeSpecBase) -> ProbeResult:
        # The spec's own timeout, but never longer than most of its interval.
        limit = min(spec.timeout_s, spec.interval_s * DEADLINE_SHARE)
        if limit < spec.timeout_s:
            from dataclasses import replace

            spec = replace(spec, timeout_s=limit)  # type: ignore[type-var]  # specs are dataclasses
        with tracing(spec.name) as trace:
            result = await run_probe(spec, self.ctx)
        trace.outcome = str(result.outcome)
        self.traces[spec.name] = trace
        return result

    # -- results and decisions ------------------------------------------------------------------
    def record(self, result: ProbeResult) -> Decision:
        """Fold one result into the state, decide, and act if the verdict changed."""
        now = self.clock()
        self.last[result.probe] = result
        stats = self.stats.setdefault(result.probe, self._new_stats())
        if result.outcome != stats.outcome:
            stats.outcome, stats.streak, stats.since = result.outcome, 0, now
        stats.streak += 1
        # Failures in a row as the policy counts them (a local error never counts).
        if result.alive:
            stats.fail_streak = 0
        elif result.outcome is not Outcome.LOCAL_ERROR:
            stats.fail_streak += 1
        stats.runs += 1
        stats.last_at_wall = self.wall()
        stats.recent.append(result)
        if not result.alive:
            stats.failures += 1
            stats.failed.append(result)
        if result.rtt_ms is not None:
            stats.rtts.append(result.rtt_ms)
            alpha = 0.3
            stats.ewma_ms = (
                result.rtt_ms
                if stats.ewma_ms is None
                else alpha * result.rtt_ms + (1 - alpha) * stats.ewma_ms
            )
        self._log_result(result, stats, now)
        watch = self._watches.get(result.probe)
        if watch is not None:
            watch.seen(result)
        self.state = observe(self.state, result, self.policy, now)
        previous = self.decision
        self.decision = decide(self.state, self.policy, now)
        for observer in self.observers:
            observer.on_result(result, now)
        if self.decision.verdict is not previous.verdict:
            log.warning(
                "event=verdict_changed from=%s to=%s score=%d reasons=%r",
                previous.verdict,
                self.decision.verdict,
                self.decision.score,
                [r.detail or r.outcome for r in self.decision.reasons[:3]],
            )
            for observer in self.observers:
                observer.on_decision(self.decision)
        why = self._should_act()
        if why:
            self._act(self.decision, why)
        return self.decision

    def _log_result(self, result: ProbeResult, stats: ProbeStats, now: float) -> None:
        """A probe result is logged when its outcome changes, not on every run of the same
        state: a healthy standby's "PBX not running" / "VIP not held here" would otherwise be
        two lines a second. On the active node the first runs of a failure are logged each
        (they build up to a failover: an operator wants each one); an outcome that stays is
        summarised every RESULT_SUMMARY_S."""
        failing = result.outcome is not Outcome.OK
        level = logging.WARNING if failing else logging.INFO
        if result.outcome is Outcome.LOCAL_ERROR:
            level = logging.ERROR
        changed = stats.streak == 1
        building = failing and self.decision.active and stats.streak <= ACTIVE_FAILURES_LOGGED
        if failing and not (changed or building) and now - stats.summarised_at >= RESULT_SUMMARY_S:
            stats.summarised_at = now
            log.info(
                "event=probe_unchanged probe=%s outcome=%s runs=%d for_s=%.0f detail=%r",
                result.probe,
                result.outcome,
                stats.streak,
                now - stats.since,
                result.detail,
            )
            return
        if changed or building:
            stats.summarised_at = now
        else:
            level = logging.DEBUG  # the same state again: only for a debug log
        log.log(
            level,
            "event=probe_result probe=%s outcome=%s status=%s rtt_ms=%s detail=%r",
            result.probe,
            result.outcome,
            result.status_code,
            result.rtt_ms,
            result.detail,
        )

    def _new_stats(self) -> ProbeStats:
        o = self.options
        return ProbeStats(
            rtts=deque(maxlen=o.latency_window),
            recent=deque(maxlen=o.history),
            failed=deque(maxlen=o.failure_history),
        )

    def _act(self, decision: Decision, why: str = "changed") -> None:
        self._acted = decision.verdict
        self._acted_at = self.clock()
        task = asyncio.get_running_loop().create_task(self._act_now(decision, why))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _should_act(self) -> str:
        """Why the verdict is handed to the agent now ("" = not now). A new verdict is handed
        over at once ("changed"). When the last hand-over did not take effect (a tool failed
        or timed out, a rail refused, the agent crashed), the same verdict is handed over again
        ("retry"), at most every ACTION_RETRY_S (JOIN_RETRY_S while the node is still joining
        its cluster). And every `reassert_s` even when it worked ("reassert"): a transient
        attribute can be lost behind our back."""
        if self.agent is None or not self.options.act:
            return ""
        if self.decision.verdict != self._acted:
            return "changed"
        since = self.clock() - self._acted_at
        if not self._acted_ok:
            wait = JOIN_RETRY_S if self._acted_waiting else ACTION_RETRY_S
            return "retry" if since >= wait else ""
        return "reassert" if since >= self.options.reassert_s else ""

    async def _act_now(self, decision: Decision, why: str = "changed") -> None:
        """Hand the verdict to the cluster agent, one action at a time, off the loop: the
        agent runs crm_* tools (each with its own timeout) and must never stall probing."""
        async with self._act_lock:
            if decision is not self.decision and decision.verdict is not self.decision.verdict:
                return  # superseded while waiting for the lock
            reason = "; ".join(r.detail or f"{r.probe} {r.outcome}" for r in decision.reasons[:3])
            self._acted_ok = False
            try:
                record = await asyncio.to_thread(self._agent_call, decision, reason)
            except Exception:  # an agent bug must not stop the daemon
                log.exception("event=action_crashed verdict=%s", decision.verdict)
                return
            self._acted_ok = record.ok
            self._acted_waiting = record.result == "waiting"
            self._log_action(decision, record, why)
            for observer in self.observers:
                observer.on_action(record)

    def _log_action(self, decision: Decision, record: AuditRecord, why: str) -> None:
        """One line per change of what the hand-overs say, not one per re-assertion or retry:
        "unchanged" (nothing was done), the same failure again, and a node still joining (the
        agent reports that once itself) are not repeated. A re-assertion that had to write
        (`why=reassert result=done`: the attribute had been lost) is always logged."""
        action, result, rail, detail = record.action, str(record.result), record.rail, record.detail
        gist = (str(decision.verdict), action, result, str(rail), detail)
        repeated = gist == self._last_logged
        self._last_logged = gist
        if result in ("waiting", "unchanged") or (repeated and not self._acted_ok):
            log.debug("event=action verdict=%s why=%s result=%s", decision.verdict, why, result)
            return
        log.log(
            logging.WARNING if self._acted_ok else logging.ERROR,
            "event=action verdict=%s why=%s action=%s result=%s rail=%s detail=%r",
            decision.verdict,
            why,
            action,
            result,
            rail,
            detail,
        )

    def _agent_call(self, decision: Decision, reason: str) -> AuditRecord:
        """Publish the verdict. Each agent turns it into its own action: the health attribute
        itself, or a ban / standby on the verdicts it acts on and its undo on green."""
        assert self.agent is not None  # _should_act hands nothing over without an agent
        return self.agent.publish_health(decision.verdict, reason=reason)

    # -- views for HTTP and `sipwatch check` ------------------------------------------------------
    def _grace(self) -> dict[str, Any] | None:
        """The grace in force now (failures in it are yellow, not red), or None."""
        now, st, pol = self.clock(), self.state, self.policy
        if st.started_s is not None and now < st.started_s + pol.startup_grace_s:
            return {
                "grace": "startup",
                "left_s": round(st.started_s + pol.startup_grace_s - now, 1),
            }
        if st.active and st.active_since_s is not None:
            end = st.active_since_s + pol.takeover_grace_s
            if now < end:
                return {"grace": "takeover", "left_s": round(end - now, 1)}
        return None

    def waiting_for_first_results(self) -> list[str]:
        """Probes that have not reported once yet (at start, or after a reload added them)."""
        return [s.name for s in self.specs if s.name not in self.last]

    def status(self) -> dict[str, Any]:
        d = self.decision
        probes: dict[str, Any] = {}
        for spec in self.specs:
            stats = self.stats.get(spec.name)
            last = self.last.get(spec.name)
            probes[spec.name] = {
                "kind": spec.kind,
                "interval_s": spec.interval_s,
                "last": last.to_dict() if last else None,
                "runs": stats.runs if stats else 0,
                "failures": stats.failures if stats else 0,
                "rtt_ewma_ms": round(stats.ewma_ms, 3) if stats and stats.ewma_ms else None,
                "rtt_p95_ms": stats.p95_ms() if stats else None,
                "rtt_recent_ms": [round(v, 3) for v in stats.rtts][-50:] if stats else [],
                "recent": [r.outcome for r in stats.recent] if stats else [],
                "recent_failures": [
                    {"outcome": r.outcome, "detail": r.detail, "status_code": r.status_code}
                    for r in (stats.failed if stats else ())
                ][-20:],
            }
        audit = self.agent.audit if self.agent is not None else None
        actions = [r.to_dict() for r in audit.records()] if audit is not None else []
        return {
            **d.to_dict(),
            "policy": self.policy_name,
            "grace": self._grace(),
            "uptime_s": round(self.wall() - self.started_wall, 1),
            "probes": probes,
            "actions": actions[-50:],
            "source": "daemon",
            **self.meta,
            **{name: read() for name, read in self.status_sections.items()},
        }
