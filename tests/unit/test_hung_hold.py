"""hung_hold_s: a node whose PBX froze stays red and ineligible for a while, even once its
stop killed the frozen PBX and the node is a standby (the lab saw the group restarted on the
node that had just hung: green again the moment its PBX was gone)."""

from __future__ import annotations

from sipwatch.model import Outcome, ProbeResult, Verdict
from sipwatch.policy import Policy, decide, initial_state, observe

POLICY = {
    "startup_grace_s": 0,
    "active_when": ["vip"],
    "takeover_grace_s": 3.0,
    "hung_hold_s": 10.0,
    "defaults": {"fall": 1, "rise": 1},
    "kinds": {"pbx_process": {"on_standby": "ignore"}, "vip": {"on_standby": "ignore"}},
}


def r(probe: str, kind: str, outcome: Outcome) -> ProbeResult:
    # the pbx_process probe reports a frozen PBX as blocking takeover
    blocks = outcome is Outcome.HUNG
    return ProbeResult(probe=probe, kind=kind, target="t", outcome=outcome, blocks_takeover=blocks)


def run(
    policy: Policy, steps: list[tuple[float, str, str, Outcome]]
) -> list[tuple[float, Verdict, bool]]:
    state = initial_state(0.0)
    seen = []
    for now, probe, kind, outcome in steps:
        state = observe(state, r(probe, kind, outcome), policy, now)
        d = decide(state, policy, now)
        seen.append((now, d.verdict, d.eligible))
    return seen


STEPS = [
    (0.0, "vip", "vip", Outcome.OK),  # active; the takeover grace runs until 3.0
    (0.5, "proc", "pbx_process", Outcome.OK),
    (1.0, "proc", "pbx_process", Outcome.HUNG),  # frozen inside the takeover grace
    (1.5, "proc", "pbx_process", Outcome.DOWN),  # its stop killed it
    (1.6, "vip", "vip", Outcome.DOWN),  # the VIP left: a standby now
    (5.0, "proc", "pbx_process", Outcome.DOWN),
    (11.5, "proc", "pbx_process", Outcome.DOWN),  # the hold is over
]


def test_a_node_whose_pbx_froze_stays_red_and_ineligible_for_the_hold() -> None:
    seen = run(Policy.model_validate(POLICY), STEPS)
    assert [(v, e) for _, v, e in seen[2:6]] == [(Verdict.RED, False)] * 4
    assert seen[-1][1:] == (Verdict.GREEN, True)


def test_without_the_hold_the_node_is_green_the_moment_its_pbx_is_gone() -> None:
    """The flap the hold prevents (and the default of 0 keeps for old policies)."""
    seen = run(Policy.model_validate({**POLICY, "hung_hold_s": 0}), STEPS)
    assert seen[2][1] is Verdict.RED
    assert seen[4][1:] == (Verdict.GREEN, True)


def test_the_hold_reason_says_why_and_for_how_long() -> None:
    policy = Policy.model_validate(POLICY)
    state = initial_state(0.0)
    for now, probe, kind, outcome in STEPS[:4]:
        state = observe(state, r(probe, kind, outcome), policy, now)
    reasons = decide(state, policy, 1.5).reasons
    assert any("frozen 0.5 s ago" in x.detail and "9.5 s more" in x.detail for x in reasons)
