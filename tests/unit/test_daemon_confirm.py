"""Confirm at once (issue 15, HAProxy's fastinter): after a failed run the next run of that
probe comes after the policy's `confirm_interval_s`, not its interval, until `fall` confirms
the failure or an answer clears it; bounded so a flapping target is no probe storm.

`Daemon.record` is fed results and `_next_delay` asked when the probe's loop would run next
(what `_probe_loop` sleeps), with an injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipwatch.daemon import CONFIRM_RUNS_PER_MIN, Daemon, DaemonOptions
from sipwatch.model import Outcome, ProbeResult
from sipwatch.policy import Policy
from sipwatch.probes._sip import ProbeContext


@dataclass(frozen=True)
class Spec:
    name: str = "udp"
    kind: str = "sip_options"
    interval_s: float = 2.0


def make(**rule: object) -> tuple[Daemon, list[float]]:
    now = [1000.0]
    pol = Policy.model_validate({"startup_grace_s": 0, "defaults": {"fall": 3, "rise": 1, **rule}})
    daemon = Daemon(
        [], ProbeContext(), pol, clock=lambda: now[0], options=DaemonOptions(jitter=0.0)
    )
    return daemon, now


def run(daemon: Daemon, now: list[float], outcome: Outcome) -> float:
    result = ProbeResult(probe="udp", kind="sip_options", target="t", outcome=outcome)
    daemon.record(result)
    delay = daemon._next_delay(Spec(), result)
    now[0] += delay
    return delay


def test_a_failure_is_confirmed_at_once_then_back_to_the_interval() -> None:
    daemon, now = make()
    assert run(daemon, now, Outcome.OK) == 2.0
    delays = [run(daemon, now, Outcome.TIMEOUT) for _ in range(5)]
    # fall 3: two confirm runs after the 1st and 2nd failure; confirmed, the interval again.
    assert delays == [0.1, 0.1, 2.0, 2.0, 2.0]
    assert daemon.decision.verdict == "red"


def test_an_answer_clears_it_and_the_interval_resumes() -> None:
    daemon, now = make()
    assert [run(daemon, now, o) for o in (Outcome.TIMEOUT, Outcome.OK, Outcome.OK)] == [
        0.1,
        2.0,
        2.0,
    ]
    assert daemon.decision.verdict == "green"


def test_off_when_zero_and_never_for_local_errors() -> None:
    daemon, now = make(confirm_interval_s=0)
    assert run(daemon, now, Outcome.TIMEOUT) == 2.0
    daemon, now = make()
    assert run(daemon, now, Outcome.LOCAL_ERROR) == 2.0  # never counts toward failover


def test_a_flapping_target_is_bounded() -> None:
    daemon, now = make()
    confirms = 0
    started = now[0]
    while now[0] - started < 60.0:
        confirms += run(daemon, now, Outcome.TIMEOUT) < 2.0
        run(daemon, now, Outcome.OK)
    assert confirms == CONFIRM_RUNS_PER_MIN
