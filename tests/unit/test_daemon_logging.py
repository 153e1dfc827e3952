"""What `sipwatch run` logs about probe results and hand-overs: changes of state, not every
run of the same state (issue 10: a healthy standby logged two WARNING lines a second).

The daemon is fed results directly (no probing, no event loop: `Daemon.record`), with the
lab's standby rules (`active_when = ["vip"]`, the PBX's probes not judged on a standby).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from sipwatch.cluster.audit import ActionOutcome, AuditRecord
from sipwatch.daemon import ACTIVE_FAILURES_LOGGED, RESULT_SUMMARY_S, Daemon
from sipwatch.model import Outcome, ProbeResult
from sipwatch.policy import Policy
from sipwatch.probes._sip import ProbeContext

POLICY = {
    "active_when": ["vip"],
    "takeover_grace_s": 0.0,
    "startup_grace_s": 0.0,
    "kinds": {"pbx_process": {"on_standby": "ignore"}, "vip": {"on_standby": "ignore"}},
    "defaults": {"role": "critical", "fall": 3, "rise": 1},
}


def res(probe: str, kind: str, outcome: Outcome, detail: str = "") -> ProbeResult:
    return ProbeResult(probe=probe, kind=kind, target="t", outcome=outcome, detail=detail)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock) -> Daemon:
    return Daemon([], ProbeContext(), Policy.model_validate(POLICY), clock=clock)


def result_lines(caplog: pytest.LogCaptureFixture, event: str = "probe_result") -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={event} " in r.getMessage()]


def test_a_healthy_standby_logs_its_normal_state_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    daemon = make(clock)
    with caplog.at_level(logging.INFO, logger="sipwatch.daemon"):
        for _ in range(120):  # two minutes of a standby at 1 s
            daemon.record(res("vip", "vip", Outcome.DOWN, "VIP not held here"))
            daemon.record(res("pbx", "pbx_process", Outcome.DOWN, "PBX not running"))
            clock.now += 1.0
    assert not daemon.decision.active
    lines = result_lines(caplog)
    assert len(lines) == 2, lines  # one per probe: the state it is in
    assert "probe=vip outcome=down" in lines[0] and "probe=pbx outcome=down" in lines[1]


def test_a_change_of_outcome_is_logged_and_a_lasting_one_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    daemon = make(clock)
    with caplog.at_level(logging.INFO, logger="sipwatch.daemon"):
        daemon.record(res("vip", "vip", Outcome.DOWN))
        for _ in range(int(RESULT_SUMMARY_S) + 5):
            daemon.record(res("pbx", "pbx_process", Outcome.DOWN))
            clock.now += 1.0
        daemon.record(res("pbx", "pbx_process", Outcome.OK))
    lines = result_lines(caplog)
    assert [ln.split()[1] for ln in lines] == ["probe=vip", "probe=pbx", "probe=pbx"]
    assert "outcome=ok" in lines[-1]
    summaries = result_lines(caplog, "probe_unchanged")
    assert len(summaries) == 1 and "probe=pbx outcome=down" in summaries[0], summaries


def test_failures_on_the_active_node_are_logged_as_they_build_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    daemon = make(clock)
    with caplog.at_level(logging.INFO, logger="sipwatch.daemon"):
        daemon.record(res("vip", "vip", Outcome.OK))
        assert daemon.decision.active
        for _ in range(ACTIVE_FAILURES_LOGGED + 10):
            daemon.record(res("udp", "sip_options", Outcome.TIMEOUT))
            clock.now += 1.0
    timeouts = [ln for ln in result_lines(caplog) if "probe=udp" in ln]
    assert len(timeouts) == ACTIVE_FAILURES_LOGGED, timeouts
    assert all(
        r.levelno == logging.WARNING for r in caplog.records if "probe=udp" in r.getMessage()
    )


def test_unchanged_reassertions_and_repeated_failures_are_not_repeated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = make(Clock())

    def Record(result: str, detail: str = "") -> AuditRecord:
        return AuditRecord(
            at=datetime.now(UTC),
            action="publish_health",
            agent="health_attribute",
            node="n1",
            resource="g_pbx",
            result=ActionOutcome(result),
            summary="set node attribute #health-sipwatch=green on n1",
            detail=detail,
        )

    def hand_over(record: AuditRecord, why: str) -> None:
        daemon._acted_ok = record.ok
        daemon._log_action(daemon.decision, record, why)

    with caplog.at_level(logging.INFO, logger="sipwatch.daemon"):
        hand_over(Record("done"), "changed")
        for _ in range(5):
            hand_over(Record("unchanged"), "reassert")
        for _ in range(5):
            hand_over(Record("failed", "cibadmin: timed out"), "retry")
        for _ in range(3):
            hand_over(Record("waiting", "n1 has not joined the cluster yet"), "retry")
        hand_over(Record("done"), "reassert")  # a lost attribute written again: news
    lines = result_lines(caplog, "action")
    assert len(lines) == 3, lines
    assert "why=changed" in lines[0] and "result=done" in lines[0]
    assert "result=failed" in lines[1]
    assert "why=reassert" in lines[2] and "result=done" in lines[2]


def test_status_says_which_grace_is_in_force() -> None:
    """/status "grace": what makes a failure yellow instead of red right now (the lab waits
    for None before injecting a fault into a steady node)."""
    clock = Clock()
    daemon = Daemon(
        [],
        ProbeContext(),
        Policy.model_validate({**POLICY, "startup_grace_s": 10.0}),
        clock=clock,
    )
    assert daemon.status()["grace"] == {"grace": "startup", "left_s": 10.0}
    clock.now += 10.5
    assert daemon.status()["grace"] is None
