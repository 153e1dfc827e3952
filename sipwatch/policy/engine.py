"""The policy engine: from probe results over time to a Decision (verdict, score, reasons).

Owns: the per-probe state machine (rise/fall hysteresis, the "K failures within W seconds"
window, the smoothed RTT, the Retry-After hold) and turning those states into one Decision.
Must not know: sockets, files, clocks or asyncio. Time comes in as `now` (monotonic seconds,
chosen by the caller), so a history is a table and a test never sleeps.

    state = initial_state(now)                        once, when monitoring starts
    state = observe(state, result, policy, now)       for each ProbeResult as it arrives
    decision = decide(state, policy, now)             whenever a verdict is wanted
    state, decision = evaluate(state, results, policy, now)   a round: observe all, decide
    decision = one_shot(results, policy, now)         no history (`sipwatch check`)

What each outcome does to a probe (rule = Policy.rule_for(probe, kind)):
    ok, draining, degraded      answered: count toward `rise`, end a failure streak
    timeout, refused, unreachable, tls_error, malformed, dns_error, bad_status, no_media,
    down
                                a failure: down after `fall` in a row, or after
                                `window_failures` within `window_s`
    hung                        a failure that puts the probe down at once, red whatever its
                                role (a frozen PBX group is certain, no need to wait)
    local_error                 leaves the probe's state exactly where it was: it never counts
                                toward failover nor toward recovery; reported with local=True

What a probe's state does to the verdict, capped by its role (critical: up to red, major: up
to yellow, minor: the score only) and, for scope="remote" results, by `remote_failures`:
    down (after fall/window)    red; only yellow during the startup grace
    draining                    yellow while the latest result is draining, and for
                                min(Retry-After, draining_max_hold_s) after each 503
    degraded                    yellow
    smoothed RTT > rtt_yellow_ms   yellow (reason outcome "slow")
    blocks_takeover             red and eligible=False, whatever the role, scope or grace

Active or standby: with `active_when` set, the node is active while one of those probes (by
name or kind, e.g. the VIP probe) answers ok/degraded/draining, and a standby otherwise (its
VIP is elsewhere: the PBX is not meant to run here). On a standby, probes whose rule says
`on_standby = "ignore"` are reported but neither judged nor scored, so a standby with no PBX
running stays green and eligible. When the node becomes active their hysteresis starts
afresh (failures seen while standby are forgotten) and `takeover_grace_s` begins, during
which failures are only yellow, as in the startup grace.

The score is the weighted share of healthy probes (ok 1, yellow 0.5, down 0; local errors,
probes still in grace and ignored remote findings are left out), 100 when nothing is scored.
A score under `score_red_below`/`score_yellow_below` makes the verdict red/yellow, and the
score is then clamped into the verdict's band so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sipwatch.model import Decision, Outcome, ProbeResult, Reason, Verdict
from sipwatch.policy.schema import Policy, Rule

_FAILURES = frozenset(
    {
        Outcome.TIMEOUT,
        Outcome.REFUSED,
        Outcome.UNREACHABLE,
        Outcome.TLS_ERROR,
        Outcome.MALFORMED,
        Outcome.DNS_ERROR,
        Outcome.BAD_STATUS,
        Outcome.NO_MEDIA,
        Outcome.DOWN,
        Outcome.HUNG,
    }
)

# Effects, ordered: what a reason does to the verdict.
_NONE, _YELLOW, _RED = 0, 1, 2
_EFFECT_NAME = {_NONE: "none", _YELLOW: "yellow", _RED: "red"}
_VERDICT = {_NONE: Verdict.GREEN, _YELLOW: Verdict.YELLOW, _RED: Verdict.RED}
_ROLE_CEILING = {"critical": _RED, "major": _YELLOW, "minor": _NONE}
_REMOTE_CEILING = {"ignore": _NONE, "yellow": _YELLOW, "red": _RED}
_REMOTE_FLOOR = {"ignore": 1.0, "yellow": 0.5, "red": 0.0}  # a remote probe's lowest health


@dataclass(frozen=True, slots=True)
class ProbeState:
    """What the engine remembers about one probe. Times are the caller's monotonic seconds."""

    probe: str
    kind: str
    last: ProbeResult  # the latest result, local errors included
    last_since_s: float  # start of the current run of last.outcome
    counted: ProbeResult | None = None  # the latest result that was not a local error
    counted_since_s: float = 0.0  # start of the current run of counted.outcome
    up: bool = True  # the hysteresis state; a new probe starts up (it must fall to fail)
    changed_s: float | None = None  # when `up` last changed; None: up since first seen
    down_cause: str = ""  # which rule put it down
    ok_streak: int = 0  # answers in a row
    fail_streak: int = 0  # failures in a row
    fail_since_s: float | None = None  # first failure of the current streak
    last_failure: str = ""  # outcome of the latest failure
    failures: tuple[float, ...] = ()  # times of the latest failures inside window_s
    rtt_ewma_ms: float | None = None
    slow_since_s: float | None = None  # when the smoothed RTT went above the threshold
    draining_since_s: float | None = None
    draining_until_s: float | None = None  # yellow is held until then (Retry-After, capped)
    hung_at_s: float | None = None  # the latest hung result (policy hung_hold_s)


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Every probe's state, sorted by probe name. `started_s` opens the startup grace; None
    means no grace (one-shot evaluation). `active` says whether this node is the active one
    (see `active_when`); `active_since_s` opens the takeover grace."""

    started_s: float | None = None
    probes: tuple[ProbeState, ...] = field(default=())
    active: bool = True
    active_since_s: float | None = None

    def get(self, probe: str) -> ProbeState | None:
        return next((p for p in self.probes if p.probe == probe), None)

    def retain(self, names: Iterable[str]) -> PolicyState:
        """Forget probes not in `names` (after a config reload removed them)."""
        keep = set(names)
        return replace(self, probes=tuple(p for p in self.probes if p.probe in keep))

    def _with(self, ps: ProbeState) -> PolicyState:
        others = [p for p in self.probes if p.probe != ps.probe]
        return replace(self, probes=tuple(sorted([*others, ps], key=lambda p: p.probe)))


def initial_state(now: float) -> PolicyState:
    """An empty state whose startup grace starts at `now`."""
    return PolicyState(started_s=now)


def observe(
    state: PolicyState, result: ProbeResult, policy: Policy, now: float, *, steady: bool = False
) -> PolicyState:
    """Fold one result, observed at `now`, into the state.

    steady=True judges the result as if its outcome had held long enough to pass `fall` or
    `rise` (a failure puts the probe down at once): that is how one_shot() reads one round.
    """
    rule = policy.rule_for(result.probe, result.kind)
    prev = state.get(result.probe)
    outcome = result.outcome
    if prev is None:
        prev = ProbeState(probe=result.probe, kind=result.kind, last=result, last_since_s=now)
    last_since = prev.last_since_s if prev.last.outcome is outcome else now
    if outcome is Outcome.LOCAL_ERROR:
        # sipwatch could not look: nothing is learnt about the probed thing.
        return state._with(replace(prev, kind=result.kind, last=result, last_since_s=last_since))
    same_run = prev.counted is not None and prev.counted.outcome is outcome
    ps = replace(
        prev,
        kind=result.kind,
        last=result,
        last_since_s=last_since,
        counted=result,
        counted_since_s=prev.counted_since_s if same_run else now,
    )
    if outcome is Outcome.HUNG:
        ps = replace(ps, hung_at_s=now)
    ps = _hysteresis(ps, outcome, rule, now, steady=steady)
    ps = _latency(ps, result, rule, policy, steady=steady, now=now)
    ps = _draining(ps, prev, result, policy, now)
    state = state._with(ps)
    if not _is_marker(ps, policy):
        return state
    active = _node_active(state, policy)
    if active == state.active:
        return state
    if not active:
        return replace(state, active=False)
    if steady:  # one round, no history to distrust
        return replace(state, active=True)
    return _became_active(state, policy, now)


def _is_marker(ps: ProbeState, policy: Policy) -> bool:
    return ps.probe in policy.active_when or ps.kind in policy.active_when


_PRESENT = frozenset({Outcome.OK, Outcome.DEGRADED, Outcome.DRAINING})


def _node_active(state: PolicyState, policy: Policy) -> bool:
    markers = [p.counted for p in state.probes if _is_marker(p, policy) and p.counted]
    return not markers or any(c.outcome in _PRESENT for c in markers)


def _became_active(state: PolicyState, policy: Policy, now: float) -> PolicyState:
    """Standby -> active: what the standby-ignored probes saw before (the PBX not running
    here, as designed) says nothing about the service starting now."""
    fresh = []
    for ps in state.probes:
        if policy.rule_for(ps.probe, ps.kind).on_standby == "ignore":
            ps = replace(
                ps,
                up=True,
                changed_s=None,
                down_cause="",
                ok_streak=0,
                fail_streak=0,
                fail_since_s=None,
                failures=(),
            )
        fresh.append(ps)
    return replace(state, probes=tuple(fresh), active=True, active_since_s=now)


def _hysteresis(
    ps: ProbeState, outcome: Outcome, rule: Rule, now: float, *, steady: bool
) -> ProbeState:
    window = tuple(t for t in ps.failures if t > now - rule.window_s)
    if outcome not in _FAILURES:
        ok_streak = ps.ok_streak + 1
        answered = replace(ps, ok_streak=ok_streak, fail_streak=0, fail_since_s=None)
        if not ps.up and ok_streak >= rule.rise:
            # Back up: the window starts afresh, or old failures would put it down again.
            return replace(answered, up=True, changed_s=now, down_cause="", failures=())
        return replace(answered, failures=window)
    fail_streak = ps.fail_streak + 1
    if rule.window_failures:
        window = (*window, now)[-rule.window_failures :]
    failed = replace(
        ps,
        ok_streak=0,
        fail_streak=fail_streak,
        fail_since_s=ps.fail_since_s if ps.fail_streak else now,
        last_failure=str(outcome),
        failures=window,
    )
    if not ps.up:
        return failed
    cause = ""
    if outcome is Outcome.HUNG:
        cause = "hung: red at once, without waiting for fall"
    elif steady:
        cause = "failed in a one-shot check (no history: judged as if it had kept failing)"
    elif fail_streak >= rule.fall:
        cause = f"{fail_streak} failures in a row (fall {rule.fall})"
    elif rule.window_failures and len(window) >= rule.window_failures:
        cause = (
            f"{len(window)} failures within {rule.window_s:g} s "
            f"(window rule: {rule.window_failures} in {rule.window_s:g} s)"
        )
    if not cause:
        return failed
    return replace(failed, up=False, changed_s=now, down_cause=cause)


def _latency(
    ps: ProbeState, result: ProbeResult, rule: Rule, policy: Policy, *, steady: bool, now: float
) -> ProbeState:
    if result.rtt_ms is None:
        return ps
    alpha = policy.rtt_ewma_alpha
    if ps.rtt_ewma_ms is None or steady:
        ewma = result.rtt_ms
    else:
        ewma = alpha * result.rtt_ms + (1 - alpha) * ps.rtt_ewma_ms
    slow = 0 < rule.rtt_yellow_ms < ewma
    since = (ps.slow_since_s if ps.slow_since_s is not None else now) if slow else None
    return replace(ps, rtt_ewma_ms=ewma, slow_since_s=since)


def _draining(
    ps: ProbeState, prev: ProbeState, result: ProbeResult, policy: Policy, now: float
) -> ProbeState:
    if result.outcome is not Outcome.DRAINING:
        return ps
    # RFC 3261 §21.5.4: 503 with Retry-After asks us to leave the server alone that long.
    # The latest answer sets the hold; the policy caps it so a huge value cannot pin yellow.
    hold = min(max(result.retry_after_s or 0.0, 0.0), policy.draining_max_hold_s)
    ongoing = (prev.counted is not None and prev.counted.outcome is Outcome.DRAINING) or (
        prev.draining_until_s is not None and now <= prev.draining_until_s
    )
    since = prev.draining_since_s if ongoing and prev.draining_since_s is not None else now
    return replace(ps, draining_since_s=since, draining_until_s=now + hold)


@dataclass(frozen=True, slots=True)
class _Assessment:
    effect: int = _NONE
    health: float | None = None  # None: left out of the score
    blocks: bool = False
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class _Finding:
    """One thing wrong (or not yet judged) with a probe, before the role and scope caps."""

    level: int  # effect before caps
    health: float | None  # None: still in grace, not scored yet
    outcome: str
    since: float | None
    detail: str
    ignores_role: bool = False  # a hung PBX is red whatever the probe's role


def _assess(
    ps: ProbeState, rule: Rule, policy: Policy, now: float, grace: str, standby: bool
) -> _Assessment:
    """What one probe does to the decision. `grace` names the grace in force, or is ""."""
    held = _hung_hold(ps, policy, now)
    if held is not None:
        return held
    blocks = ps.counted is not None and ps.counted.blocks_takeover
    if standby and rule.on_standby == "ignore" and not blocks:
        return _not_judged_on_standby(ps)
    local = _local_error(ps)
    c = ps.counted
    if c is None:  # only local errors so far: nothing known
        return _Assessment(reasons=local)
    if c.blocks_takeover:  # eligibility is a fact, not a judgement: no role, scope or grace
        reason = Reason(
            ps.probe,
            str(c.outcome),
            ps.counted_since_s,
            "blocks takeover: " + (c.detail or "this node must not run the PBX"),
            effect="red",
        )
        return _Assessment(_RED, 0.0, True, (reason, *local))
    found = _down_findings(ps, rule, c, grace) if not ps.up else _up_findings(ps, rule, c, now)
    return _capped(ps, rule, policy, c, found, local)


def _hung_hold(ps: ProbeState, policy: Policy, now: float) -> _Assessment | None:
    """Red and ineligible for `hung_hold_s` after the PBX was found frozen, whatever came
    since (killed by its stop, thawed, standby now). None once the hold is over, or while it
    is still hung (then the hung result speaks for itself)."""
    if ps.hung_at_s is None or ps.counted is None or ps.counted.outcome is Outcome.HUNG:
        return None
    left = ps.hung_at_s + policy.hung_hold_s - now
    if left <= 0:
        return None
    detail = (
        f"the PBX was frozen {now - ps.hung_at_s:.1f} s ago: not eligible to run it for "
        f"{left:.1f} s more (hung_hold_s = {policy.hung_hold_s:g})"
    )
    reason = Reason(ps.probe, str(Outcome.HUNG), ps.hung_at_s, detail, effect="red")
    return _Assessment(_RED, 0.0, True, (reason,))


def _not_judged_on_standby(ps: ProbeState) -> _Assessment:
    """A service that runs only on the active node: nothing to judge here, and local errors
    are expected too (e.g. from_vip cannot bind a VIP held elsewhere)."""
    if ps.last.outcome is Outcome.OK and ps.up:
        return _Assessment()
    detail = "standby node: not judged (on_standby = ignore)"
    if ps.last.detail:
        detail += f"; {ps.last.detail}"
    return _Assessment(reasons=(Reason(ps.probe, str(ps.last.outcome), None, detail),))


def _local_error(ps: ProbeState) -> tuple[Reason, ...]:
    if ps.last.outcome is not Outcome.LOCAL_ERROR:
        return ()
    return (
        Reason(
            ps.probe,
            str(Outcome.LOCAL_ERROR),
            ps.last_since_s,
            "LOCAL ERROR: sipwatch could not probe, never counted toward failover: "
            + (ps.last.detail or "no detail"),
            effect="none",
            local=True,
        ),
    )


def _down_findings(ps: ProbeState, rule: Rule, c: ProbeResult, grace: str) -> list[_Finding]:
    if c.outcome is Outcome.HUNG:
        detail = _with_detail("hung: red at once, without waiting for fall", c)
        return [_Finding(_RED, 0.0, "hung", ps.counted_since_s, detail, ignores_role=True)]
    if grace:
        detail = f"failing during the {grace}, not judged yet: {ps.down_cause}"
        return [_Finding(_YELLOW, None, ps.last_failure, ps.fail_since_s, detail)]
    detail = f"down: {ps.down_cause}"
    if ps.ok_streak:
        detail += f"; recovering, {ps.ok_streak} of rise {rule.rise} answers"
    else:
        detail = _with_detail(detail, c)
    return [_Finding(_RED, 0.0, ps.last_failure, ps.changed_s, detail)]


def _up_findings(ps: ProbeState, rule: Rule, c: ProbeResult, now: float) -> list[_Finding]:
    found: list[_Finding] = []
    if ps.fail_streak:
        detail = f"{ps.fail_streak} failure(s) in a row, not down yet (fall {rule.fall})"
        if rule.window_failures:
            detail += f"; {len(ps.failures)} of {rule.window_failures} within {rule.window_s:g} s"
        found.append(_Finding(_NONE, 1.0, ps.last_failure, ps.fail_since_s, detail))
    draining_held = ps.draining_until_s is not None and now < ps.draining_until_s
    if c.outcome is Outcome.DRAINING or draining_held:
        until = ps.draining_until_s if ps.draining_until_s is not None else now
        detail = f"draining (503 + Retry-After), held {max(until - now, 0.0):g} s more"
        found.append(_Finding(_YELLOW, 0.5, "draining", ps.draining_since_s, detail))
    if c.outcome is Outcome.DEGRADED:
        found.append(_Finding(_YELLOW, 0.5, "degraded", ps.counted_since_s, c.detail or "degraded"))
    if ps.rtt_ewma_ms is not None and 0 < rule.rtt_yellow_ms < ps.rtt_ewma_ms:
        detail = f"smoothed RTT {ps.rtt_ewma_ms:.1f} ms above {rule.rtt_yellow_ms:g} ms"
        found.append(_Finding(_YELLOW, 0.5, "slow", ps.slow_since_s, detail))
    return found


def _capped(
    ps: ProbeState,
    rule: Rule,
    policy: Policy,
    c: ProbeResult,
    found: list[_Finding],
    local: tuple[Reason, ...],
) -> _Assessment:
    """The findings under the probe's role and scope caps, and its health for the score."""
    remote = c.scope == "remote"
    remote_cap = _REMOTE_CEILING[policy.remote_failures] if remote else _RED
    effect, reasons = _NONE, []
    health: float | None = 1.0
    for f in found:
        capped = min(f.level, remote_cap)
        if not f.ignores_role:
            capped = min(capped, _ROLE_CEILING[rule.role])
        detail = f.detail
        if remote and min(f.level, remote_cap) < f.level:
            detail += f" (remote finding; remote_failures = {policy.remote_failures})"
        effect = max(effect, capped)
        if f.health is None:  # still in grace: not scored yet
            health = None
        elif health is not None:
            floor = _REMOTE_FLOOR[policy.remote_failures]
            health = min(health, max(f.health, floor) if remote else f.health)
        reasons.append(Reason(ps.probe, f.outcome, f.since, detail, effect=_EFFECT_NAME[capped]))
    if remote and policy.remote_failures == "ignore":
        health = None  # an ignored remote probe never moves the score, up or down
    return _Assessment(effect, health, False, (*reasons, *local))


def _with_detail(text: str, result: ProbeResult) -> str:
    return f"{text}; last: {result.detail}" if result.detail else text


def decide(state: PolicyState, policy: Policy, now: float) -> Decision:
    """The Decision for `state` at `now`. Pure: the same inputs give the same Decision."""
    grace = ""
    if state.started_s is not None and now < state.started_s + policy.startup_grace_s:
        grace = f"startup grace ({policy.startup_grace_s:g} s)"
    elif (
        state.active
        and state.active_since_s is not None
        and now < state.active_since_s + policy.takeover_grace_s
    ):
        grace = f"takeover grace ({policy.takeover_grace_s:g} s)"
    worst, eligible = _NONE, True
    weighted = total = 0.0
    reasons: list[Reason] = []
    for ps in state.probes:
        rule = policy.rule_for(ps.probe, ps.kind)
        a = _assess(ps, rule, policy, now, grace, not state.active)
        worst = max(worst, a.effect)
        eligible = eligible and not a.blocks
        reasons.extend(a.reasons)
        if a.health is not None:
            total += rule.weight
            weighted += rule.weight * a.health
    score = 100 if total == 0 else round(100 * weighted / total)
    by_score = _NONE
    if score < policy.score_red_below:
        by_score = _RED
    elif score < policy.score_yellow_below:
        by_score = _YELLOW
    if by_score > worst:
        worst = by_score
        threshold = "score_red_below" if by_score == _RED else "score_yellow_below"
        limit = getattr(policy, threshold)
        detail = f"weighted score {score} is below {threshold} ({limit})"
        reasons.append(Reason("", "score", None, detail, effect=_EFFECT_NAME[by_score]))
    # Keep the score inside the verdict's band: a red node never shows a green score.
    if worst == _RED:
        score = min(score, policy.score_red_below - 1)
    elif worst == _YELLOW:
        score = min(score, policy.score_yellow_below - 1)
    rank = {"red": 0, "yellow": 1, "none": 2}
    reasons.sort(key=lambda r: (rank[r.effect], not r.local, r.probe))
    return Decision(_VERDICT[worst], score, tuple(reasons), eligible, at_s=now, active=state.active)


def evaluate(
    state: PolicyState, results: Iterable[ProbeResult], policy: Policy, now: float
) -> tuple[PolicyState, Decision]:
    """Observe every result of one round at `now`, then decide."""
    for result in results:
        state = observe(state, result, policy, now)
    return state, decide(state, policy, now)


def one_shot(results: Iterable[ProbeResult], policy: Policy, now: float = 0.0) -> Decision:
    """Judge one round with no history, as `sipwatch check` does.

    Each probe is judged as if its outcome had held long enough to pass `fall` (a failure
    is down at once) or `rise` (an answer is up); the smoothed RTT is this round's RTT; a
    draining answer is yellow; there is no startup grace. blocks_takeover, hung and
    local_error mean what they always mean.
    """
    state = PolicyState(started_s=None)
    for result in results:
        state = observe(state, result, policy, now, steady=True)
    return decide(state, policy, now)
