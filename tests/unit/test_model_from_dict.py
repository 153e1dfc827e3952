"""`from_dict` is `to_dict`'s inverse (property tests), and refuses malformed input with a
ValueError naming the field, never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwatch.model import Decision, Outcome, ProbeResult, Reason, Verdict

text = st.text(max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_scalar = st.none() | st.booleans() | st.integers() | finite | text
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


def results(targets: st.SearchStrategy[tuple[ProbeResult, ...]]) -> st.SearchStrategy[ProbeResult]:
    return st.builds(
        ProbeResult,
        probe=text,
        kind=text,
        target=text,
        outcome=st.sampled_from(Outcome),
        transport=text,
        method=text,
        status_code=st.none() | st.integers(100, 699),
        reason=text,
        rtt_ms=st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        retransmissions=st.integers(0, 10),
        resolved=text,
        detail=text,
        retry_after_s=st.none() | finite,
        tls_not_after=st.none() | text,
        extra=st.dictionaries(text, json_value, max_size=3),
        targets=targets,
        scope=st.sampled_from(["node", "remote"]),
        blocks_takeover=st.booleans(),
    )


probe_results = results(st.lists(results(st.just(())), max_size=3).map(tuple))
reasons = st.builds(
    Reason,
    probe=text,
    outcome=text,
    since_s=st.none() | finite,
    detail=text,
    effect=st.sampled_from(["red", "yellow", "none"]),
    local=st.booleans(),
)
decisions = st.builds(
    Decision,
    verdict=st.sampled_from(Verdict),
    score=st.integers(0, 100),
    reasons=st.lists(reasons, max_size=4).map(tuple),
    eligible=st.booleans(),
    at_s=finite,
    active=st.booleans(),
)


@settings(max_examples=50, deadline=None)  # big values: keep the unit suite quick
@given(probe_results)
def test_probe_result_round_trip(result: ProbeResult) -> None:
    assert ProbeResult.from_dict(result.to_dict()) == result
    assert ProbeResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@given(reasons)
def test_reason_round_trip(reason: Reason) -> None:
    assert Reason.from_dict(reason.to_dict()) == reason
    assert Reason.from_dict(json.loads(json.dumps(reason.to_dict()))) == reason


@given(decisions)
def test_decision_round_trip(decision: Decision) -> None:
    assert Decision.from_dict(decision.to_dict()) == decision
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


def test_unknown_keys_are_ignored_and_defaults_fill_missing_ones() -> None:
    minimal = {"probe": "p", "kind": "sip_options", "target": "t", "outcome": "ok", "new": 1}
    assert ProbeResult.from_dict(minimal) == ProbeResult("p", "sip_options", "t", Outcome.OK)
    status = {"verdict": "red", "score": 0, "probes": {}, "source": "daemon"}
    assert Decision.from_dict(status) == Decision(Verdict.RED, 0)


RESULT = ProbeResult("p", "sip_options", "t", Outcome.OK).to_dict()
DECISION = Decision(Verdict.GREEN, 100, (Reason("p", "ok", None),)).to_dict()

BAD: list[tuple[str, Any, Any, str]] = [
    ("not an object", ProbeResult, [1, 2], "probe result: expected an object, got list"),
    ("null for a string", ProbeResult, {**RESULT, "probe": None}, "probe: expected a string"),
    (
        "required key absent",
        ProbeResult,
        {"kind": "k", "target": "t", "outcome": "ok"},
        "probe: missing",
    ),
    ("unknown outcome", ProbeResult, {**RESULT, "outcome": "fine"}, "unknown outcome 'fine'"),
    (
        "outcome not a string",
        ProbeResult,
        {**RESULT, "outcome": ["ok"]},
        "outcome: expected a string",
    ),
    (
        "bool for an int",
        ProbeResult,
        {**RESULT, "status_code": True},
        "status_code: expected an integer",
    ),
    ("text for a number", ProbeResult, {**RESULT, "rtt_ms": "1.5"}, "rtt_ms: expected a number"),
    ("negative rtt", ProbeResult, {**RESULT, "rtt_ms": -1}, "rtt_ms must be >= 0"),
    (
        "huge int for a float",
        ProbeResult,
        {**RESULT, "rtt_ms": 10**400},
        "rtt_ms: number out of range",
    ),
    ("bad scope", ProbeResult, {**RESULT, "scope": "planet"}, "scope must be"),
    ("extra not an object", ProbeResult, {**RESULT, "extra": []}, "extra: expected an object"),
    ("targets not a list", ProbeResult, {**RESULT, "targets": "x"}, "targets: expected a list"),
    (
        "bad nested target",
        ProbeResult,
        {**RESULT, "targets": [{**RESULT, "probe": 1}]},
        "probe: expected a string",
    ),
    ("int for a bool", ProbeResult, {**RESULT, "blocks_takeover": 1}, "expected true or false"),
    ("unknown verdict", Decision, {**DECISION, "verdict": "purple"}, "unknown verdict 'purple'"),
    ("score out of range", Decision, {**DECISION, "score": 101}, "score must be within 0-100"),
    ("score as text", Decision, {**DECISION, "score": "100"}, "score: expected an integer"),
    (
        "reason not an object",
        Decision,
        {**DECISION, "reasons": ["x"]},
        "reason: expected an object",
    ),
    (
        "reason without since_s",
        Decision,
        {**DECISION, "reasons": [{"probe": "p", "outcome": "ok"}]},
        "since_s: missing",
    ),
    (
        "eligible as text",
        Decision,
        {**DECISION, "eligible": "yes"},
        "eligible: expected true or false",
    ),
]


@pytest.mark.parametrize(("cls", "data", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_input_is_a_value_error_naming_the_field(
    cls: Any, data: Any, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        cls.from_dict(data)
    assert message in str(caught.value)
