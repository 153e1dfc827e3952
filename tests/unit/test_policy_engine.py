"""Policy engine: tables of probe history -> decision. Pure code, no sleeping: time is `t`.

A history is written as one string per probe: space-separated outcomes, one every `every`
seconds from `start`. Tokens:
    ok          ok, RTT 1 ms          ok@450     ok, RTT 450 ms
    503:30      503 + Retry-After 30 (draining)
    to          timeout               local      local_error
    any other Outcome value (refused, down, hung, degraded, bad_status...)
    a trailing "!" sets blocks_takeover
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sipwatch.model import Decision, Outcome, ProbeResult, Verdict
from sipwatch.policy import Policy, decide, initial_state, observe, one_shot

G, Y, R = Verdict.GREEN, Verdict.YELLOW, Verdict.RED

BASE: dict[str, Any] = {
    "startup_grace_s": 0.0,
    "draining_max_hold_s": 300.0,
    "rtt_ewma_alpha": 0.3,
    "score_yellow_below": 90,
    "score_red_below": 50,
    "defaults": {
        "role": "critical",
        "fall": 3,
        "rise": 2,
        "window_failures": 4,
        "window_s": 60.0,
        "rtt_yellow_ms": 300.0,
    },
}


def policy(**over: Any) -> Policy:
    data = {**BASE, **over}
    data["defaults"] = {**BASE["defaults"], **over.get("defaults", {})}
    return Policy.model_validate(data)


def result(probe: str, token: str, kind: str = "sip_options", **kw: Any) -> ProbeResult:
    blocks = token.endswith("!")
    token = token.rstrip("!")
    fields: dict[str, Any] = {}
    if token.startswith("ok"):
        outcome = Outcome.OK
        fields["rtt_ms"] = float(token.partition("@")[2] or 1.0)
    elif token.startswith("503:"):
        outcome = Outcome.DRAINING
        fields.update(status_code=503, retry_after_s=float(token[4:]), rtt_ms=1.0)
    elif token == "to":
        outcome = Outcome.TIMEOUT
    elif token == "local":
        outcome = Outcome.LOCAL_ERROR
        fields["detail"] = "cannot read password file /etc/sipwatch/monitor.pass"
    else:
        outcome = Outcome(token)
    return ProbeResult(
        probe=probe,
        kind=kind,
        target="sip:127.0.0.1",
        outcome=outcome,
        blocks_takeover=blocks,
        **fields,
        **kw,
    )


@dataclass
class P:
    """One probe's history."""

    probe: str
    tokens: str
    kind: str = "sip_options"
    every: float = 5.0
    start: float = 0.0
    kw: dict[str, Any] = field(default_factory=dict)

    def events(self) -> list[tuple[float, ProbeResult]]:
        return [
            (self.start + i * self.every, result(self.probe, tok, self.kind, **self.kw))
            for i, tok in enumerate(self.tokens.split())
        ]


def run(history: list[P], pol: Policy, at: float | None = None) -> Decision:
    events = sorted((e for p in history for e in p.events()), key=lambda e: e[0])
    state = initial_state(0.0)
    for t, r in events:
        state = observe(state, r, pol, t)
    return decide(state, pol, events[-1][0] if at is None else at)


@dataclass
class Row:
    id: str
    history: list[P]
    verdict: Verdict
    score: tuple[int, int]
    reasons: list[str]  # probe names with a reason, sorted, unique ("" = the score)
    pol: dict[str, Any] = field(default_factory=dict)
    at: float | None = None
    eligible: bool = True


ROWS = [
    Row("all ok", [P("pbx", "ok ok ok ok")], G, (100, 100), []),
    # --- one lost datagram, fall, rise -----------------------------------------------------
    Row(
        "one timeout among answers stays green", [P("pbx", "ok ok ok to ok ok")], G, (100, 100), []
    ),
    Row("one timeout just now: green, reported", [P("pbx", "ok ok ok to")], G, (100, 100), ["pbx"]),
    Row("two timeouts in a row: green", [P("pbx", "ok ok to to")], G, (100, 100), ["pbx"]),
    Row("three timeouts in a row: red (fall 3)", [P("pbx", "ok ok to to to")], R, (0, 49), ["pbx"]),
    Row(
        "refused counts like timeout", [P("pbx", "ok refused refused refused")], R, (0, 49), ["pbx"]
    ),
    Row(
        "recovery needs rise: one answer is not enough",
        [P("pbx", "to to to ok")],
        R,
        (0, 49),
        ["pbx"],
    ),
    Row("recovery after rise answers", [P("pbx", "to to to ok ok")], G, (100, 100), []),
    Row(
        "a failure during recovery restarts the rise count",
        [P("pbx", "to to to ok to ok")],
        R,
        (0, 49),
        ["pbx"],
    ),
    # --- flapping --------------------------------------------------------------------------
    Row(
        "flapping: 4 failures within 60 s is red though never 3 in a row",
        [P("pbx", "ok to ok to ok to ok to")],
        R,
        (0, 49),
        ["pbx"],
    ),
    Row(
        "flapping stays red while it alternates (rise never reached)",
        [P("pbx", "to ok to ok to ok to ok to ok")],
        R,
        (0, 49),
        ["pbx"],
    ),
    Row(
        "after recovery, failures from before are forgotten",
        [P("pbx", "ok to ok to ok to ok to ok ok to")],
        G,
        (100, 100),
        ["pbx"],
    ),
    Row(
        "slow flapping: failures spread wider than the window stay green",
        [P("pbx", "to ok to ok to ok to ok", every=25.0)],
        G,
        (100, 100),
        [],
    ),
    Row(
        "without the window rule, flapping never reaches fall",
        [P("pbx", "ok to ok to ok to ok to")],
        G,
        (100, 100),
        ["pbx"],
        pol={"defaults": {"window_failures": 0}},
    ),
    # --- 503 + Retry-After -----------------------------------------------------------------
    Row("503 storm: yellow, never red", [P("pbx", "503:30 " * 20)], Y, (50, 89), ["pbx"]),
    Row(
        "503 then answers: yellow held for Retry-After",
        [P("pbx", "503:30 ok ok")],
        Y,
        (50, 89),
        ["pbx"],
    ),
    Row("hold over: green", [P("pbx", "503:30 ok ok")], G, (100, 100), [], at=31.0),
    Row(
        "a huge Retry-After is capped by draining_max_hold_s (still held)",
        [P("pbx", "503:3600 ok")],
        Y,
        (50, 89),
        ["pbx"],
        pol={"draining_max_hold_s": 60.0},
        at=59.0,
    ),
    Row(
        "a huge Retry-After is capped by draining_max_hold_s (released)",
        [P("pbx", "503:3600 ok")],
        G,
        (100, 100),
        [],
        pol={"draining_max_hold_s": 60.0},
        at=61.0,
    ),
    Row(
        "503 without Retry-After is a failure",
        [P("pbx", "ok bad_status bad_status bad_status")],
        R,
        (0, 49),
        ["pbx"],
    ),
    # --- startup grace ---------------------------------------------------------------------
    Row(
        "failing during startup grace: yellow, not red",
        [P("pbx", "to to to to")],
        Y,
        (50, 89),
        ["pbx"],
        pol={"startup_grace_s": 30.0},
    ),
    Row(
        "still failing when grace ends: red at once",
        [P("pbx", "to to to to to to to")],
        R,
        (0, 49),
        ["pbx"],
        pol={"startup_grace_s": 30.0},
    ),
    Row(
        "answering during grace: green",
        [P("pbx", "ok ok")],
        G,
        (100, 100),
        [],
        pol={"startup_grace_s": 30.0},
    ),
    # --- latency ---------------------------------------------------------------------------
    Row(
        "smoothed RTT above threshold: yellow",
        [P("pbx", "ok@100 ok@500 ok@500 ok@500")],
        Y,
        (50, 89),
        ["pbx"],
    ),
    Row("one RTT spike is smoothed away", [P("pbx", "ok@10 ok@10 ok@900")], G, (100, 100), []),
    Row("one slow answer is not yet yellow", [P("pbx", "ok@100 ok@500")], G, (100, 100), []),
    Row(
        "back under the threshold: green",
        [P("pbx", "ok@500 ok@500 " + "ok@50 " * 8)],
        G,
        (100, 100),
        [],
    ),
    Row(
        "no threshold, no latency verdict",
        [P("pbx", "ok@900 ok@900")],
        G,
        (100, 100),
        [],
        pol={"defaults": {"rtt_yellow_ms": 0.0}},
    ),
    # --- local errors ----------------------------------------------------------------------
    Row(
        "only local errors: green, reported",
        [P("reg", "local local local local local")],
        G,
        (100, 100),
        ["reg"],
    ),
    Row(
        "local errors never fail a node, whatever else answers",
        [P("pbx", "ok ok ok ok ok"), P("reg", "ok local local local local", kind="sip_register")],
        G,
        (100, 100),
        ["reg"],
    ),
    Row(
        "local errors never count toward recovery either",
        [P("pbx", "to to to local local local local")],
        R,
        (0, 49),
        ["pbx"],
    ),
    # --- eligibility -----------------------------------------------------------------------
    Row(
        "blocks_takeover: red and ineligible whatever the others say",
        [P("pbx", "ok ok ok"), P("drbd", "ok ok down!", kind="drbd")],
        R,
        (0, 49),
        ["drbd"],
        eligible=False,
    ),
    Row(
        "blocks_takeover ignores role and grace",
        [P("pbx", "ok ok"), P("drbd", "down!", kind="drbd")],
        R,
        (0, 49),
        ["drbd"],
        pol={"startup_grace_s": 300.0, "kinds": {"drbd": {"role": "minor"}}},
        eligible=False,
    ),
    Row(
        "eligible again once the blocking result is gone",
        [P("pbx", "ok ok ok"), P("drbd", "down! ok", kind="drbd")],
        G,
        (100, 100),
        [],
    ),
    # --- hung ------------------------------------------------------------------------------
    Row("hung: red at once", [P("proc", "ok ok hung", kind="pbx_process")], R, (0, 49), ["proc"]),
    Row(
        "hung is red whatever the role",
        [P("proc", "hung", kind="pbx_process")],
        R,
        (0, 49),
        ["proc"],
        pol={"kinds": {"pbx_process": {"role": "minor"}}},
    ),
    Row(
        "recovery from hung needs rise",
        [P("proc", "hung ok", kind="pbx_process")],
        R,
        (0, 49),
        ["proc"],
    ),
    Row("recovered from hung", [P("proc", "hung ok ok", kind="pbx_process")], G, (100, 100), []),
    # --- degraded, roles, weights ----------------------------------------------------------
    Row("degraded: yellow", [P("drbd", "ok degraded", kind="drbd")], Y, (50, 89), ["drbd"]),
    Row(
        "a failing major probe is yellow",
        [P("pbx", "ok ok ok ok"), P("reg", "to to to to", kind="sip_register")],
        Y,
        (50, 89),
        ["reg"],
        pol={"kinds": {"sip_register": {"role": "major"}}},
    ),
    Row(
        "a failing minor probe of small weight only lowers the score",
        [P("pbx", "ok ok ok ok"), P("reg", "to to to to", kind="sip_register")],
        G,
        (90, 95),
        ["reg"],
        pol={
            "defaults": {"weight": 10.0},
            "kinds": {"sip_register": {"role": "minor", "weight": 1.0}},
        },
    ),
    Row(
        "minor probes failing together push the score under red",
        [P("pbx", "ok ok ok ok"), P("a", "to to to to"), P("b", "to to to to")],
        R,
        (0, 49),
        ["", "a", "b"],
        pol={"probes": {"a": {"role": "minor"}, "b": {"role": "minor"}}},
    ),
    Row(
        "a per-probe rule overrides its kind's",
        [P("pbx", "to to to to")],
        G,
        (100, 100),
        ["pbx"],
        pol={
            "kinds": {"sip_options": {"fall": 2}},
            "probes": {"pbx": {"fall": 5, "window_failures": 0}},
        },
    ),
    # --- remote scope ----------------------------------------------------------------------
    Row(
        "remote failure, remote_failures = ignore: green, reported, not scored",
        [P("pbx", "ok ok ok ok"), P("ivr", "to to to to", kw={"scope": "remote"})],
        G,
        (100, 100),
        ["ivr"],
        pol={"remote_failures": "ignore"},
    ),
    Row(
        "an ignored remote probe does not dilute the score either",
        [P("a", "to to to"), P("ivr", "ok ok ok", kw={"scope": "remote"})],
        R,
        (0, 0),
        ["", "a"],
        pol={"remote_failures": "ignore", "probes": {"a": {"role": "minor"}}},
    ),
    Row(
        "remote failure, remote_failures = yellow",
        [P("pbx", "ok ok ok ok"), P("ivr", "to to to to", kw={"scope": "remote"})],
        Y,
        (50, 89),
        ["ivr"],
        pol={"remote_failures": "yellow"},
    ),
    Row(
        "remote failure, remote_failures = red",
        [P("pbx", "ok ok ok ok"), P("ivr", "to to to to", kw={"scope": "remote"})],
        R,
        (0, 49),
        ["ivr"],
        pol={"remote_failures": "red"},
    ),
    Row(
        "remote findings still need fall",
        [P("ivr", "ok to", kw={"scope": "remote"})],
        G,
        (100, 100),
        ["ivr"],
        pol={"remote_failures": "red"},
    ),
]

STANDBY = {
    "active_when": ["vip"],
    "takeover_grace_s": 20.0,
    "kinds": {"sip_options": {"on_standby": "ignore"}, "vip": {"on_standby": "ignore"}},
}

ROWS += [
    Row(
        "standby: the PBX not running here is by design (green, eligible)",
        [P("vip", "down down down down", kind="vip"), P("pbx", "refused refused refused refused")],
        G,
        (100, 100),
        ["pbx", "vip"],
        pol=STANDBY,
    ),
    Row(
        "standby: blocking results still count",
        [P("vip", "down down", kind="vip"), P("drbd", "ok down!", kind="drbd")],
        R,
        (0, 49),
        ["drbd", "vip"],
        pol=STANDBY,
        eligible=False,
    ),
    Row(
        "standby: judged probes still count",
        [P("vip", "down down down", kind="vip"), P("drbd", "to to to", kind="drbd")],
        R,
        (0, 49),
        ["drbd", "vip"],
        pol=STANDBY,
    ),
    Row(
        "taking over: failures seen as a standby are forgotten, takeover grace is yellow",
        [
            P("vip", "down down down down ok ok ok", kind="vip"),
            P("pbx", "refused refused refused refused refused refused refused"),
        ],
        Y,
        (50, 89),
        ["pbx"],
        pol=STANDBY,
    ),
    Row(
        "taking over: one answer is enough, standby failures do not need rise",
        [P("vip", "down down down ok", kind="vip"), P("pbx", "refused refused refused ok")],
        G,
        (100, 100),
        [],
        pol=STANDBY,
    ),
    Row(
        "taking over: the PBX answers: green",
        [P("vip", "down down down ok ok", kind="vip"), P("pbx", "refused refused refused ok ok")],
        G,
        (100, 100),
        [],
        pol=STANDBY,
    ),
    Row(
        "active after the takeover grace: failures are red again",
        [P("vip", "down ok ok ok ok ok ok ok", kind="vip"), P("pbx", "refused " * 8)],
        R,
        (0, 49),
        ["pbx"],
        pol=STANDBY,
    ),
    Row(
        "no marker probe configured: the node counts as active",
        [P("pbx", "refused refused refused")],
        R,
        (0, 49),
        ["pbx"],
        pol=STANDBY,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_history_to_decision(row: Row) -> None:
    d = run(row.history, policy(**row.pol), row.at)
    assert d.verdict is row.verdict, d
    lo, hi = row.score
    assert lo <= d.score <= hi, d
    assert sorted({r.probe for r in d.reasons}) == row.reasons, d.reasons
    assert d.eligible is row.eligible, d


def test_reasons_say_which_outcome_since_when_and_what_it_did() -> None:
    d = run([P("pbx", "ok ok to to to")], policy())
    (reason,) = d.reasons
    assert (reason.probe, reason.outcome, reason.effect, reason.local) == (
        "pbx",
        "timeout",
        "red",
        False,
    )
    assert reason.since_s == 20.0  # went down at the third failure
    assert "3 failures in a row (fall 3)" in reason.detail
    assert d.at_s == 20.0


def test_local_error_is_flagged_loudly() -> None:
    d = run([P("pbx", "ok ok"), P("reg", "local local")], policy())
    (reason,) = d.reasons
    assert reason.local and reason.effect == "none" and reason.outcome == "local_error"
    assert reason.detail.startswith("LOCAL ERROR") and "monitor.pass" in reason.detail
    assert reason.since_s == 0.0  # since the first local error of the run


def test_draining_reason_tells_how_long_it_is_held() -> None:
    d = run([P("pbx", "503:30")], policy(), at=10.0)
    (reason,) = d.reasons
    assert (reason.outcome, reason.effect, reason.since_s) == ("draining", "yellow", 0.0)
    assert "held 20 s more" in reason.detail


def test_flapping_reason_names_the_window_rule() -> None:
    d = run([P("pbx", "ok to ok to ok to ok to")], policy())
    assert "4 failures within 60 s" in d.reasons[0].detail


def test_red_first_then_yellow_then_reported() -> None:
    d = run(
        [P("a", "to to to"), P("b", "degraded", kind="drbd"), P("c", "local"), P("d", "ok to")],
        policy(),
    )
    assert [(r.probe, r.effect) for r in d.reasons] == [
        ("a", "red"),
        ("b", "yellow"),
        ("c", "none"),
        ("d", "none"),
    ]
    assert d.reasons[2].local


def test_engine_is_pure_same_inputs_same_decision() -> None:
    history = [P("pbx", "ok to ok to ok to ok to"), P("reg", "503:30 ok", kind="sip_register")]
    assert run(history, policy()) == run(history, policy())


ONE_SHOT = [
    ("ok", [result("pbx", "ok")], G, (100, 100), []),
    ("one timeout is down: no history to wait for", [result("pbx", "to")], R, (0, 49), ["pbx"]),
    ("refused", [result("pbx", "refused")], R, (0, 49), ["pbx"]),
    ("draining", [result("pbx", "503:30")], Y, (50, 89), ["pbx"]),
    ("slow: this round's RTT is the smoothed RTT", [result("pbx", "ok@450")], Y, (50, 89), ["pbx"]),
    (
        "local error: green, reported",
        [result("pbx", "ok"), result("reg", "local")],
        G,
        (100, 100),
        ["reg"],
    ),
    ("hung", [result("proc", "hung", kind="pbx_process")], R, (0, 49), ["proc"]),
    (
        "blocks takeover",
        [result("pbx", "ok"), result("d", "down!", kind="drbd")],
        R,
        (0, 49),
        ["d"],
    ),
]


@pytest.mark.parametrize(
    "results, verdict, score, reasons", [r[1:] for r in ONE_SHOT], ids=[r[0] for r in ONE_SHOT]
)
def test_one_shot(results, verdict, score, reasons) -> None:
    # A long grace in the policy: one-shot judging never applies it.
    d = one_shot(results, policy(startup_grace_s=300.0), now=5.0)
    assert d.verdict is verdict, d
    assert score[0] <= d.score <= score[1]
    assert sorted({r.probe for r in d.reasons}) == reasons


def test_one_shot_standby_ignores_the_service_but_not_eligibility() -> None:
    pol = policy(**STANDBY)
    standby = [result("vip", "down", kind="vip"), result("pbx", "refused")]
    d = one_shot(standby, pol)
    assert (d.verdict, d.eligible, d.active) == (G, True, False)
    d = one_shot([*standby, result("drbd", "down!", kind="drbd")], pol)
    assert (d.verdict, d.eligible) == (R, False)
    d = one_shot([result("vip", "ok", kind="vip"), result("pbx", "refused")], pol)
    assert (d.verdict, d.active) == (R, True)


def test_a_call_without_audio_is_a_failure_judged_by_the_role_of_its_kind() -> None:
    """no_media (a call answered, no RTP back) counts like any failure: down after `fall`,
    then red for a critical call probe, yellow for a major one (the shipped default)."""
    from sipwatch.policy import load_policy

    for role, want in (("critical", R), ("major", Y)):
        pol = policy(kinds={"sip_call": {"role": role, "fall": 2}})
        state = initial_state(0.0)
        for now in (1.0, 2.0):
            state = observe(state, result("call", "no_media", kind="sip_call"), pol, now)
            state = observe(state, result("pbx", "ok"), pol, now)
        d = decide(state, pol, 3.0)
        assert d.verdict is want, (role, d)
        assert [r.outcome for r in d.reasons if r.probe == "call"] == ["no_media"]
    assert load_policy("default").rule_for("call", "sip_call").role == "major"
