"""The lab's fault table (testbed.lab.FAULTS): each fault name injects and heals with the calls
the if-chains it replaced made. The primitives are stand-ins that record their calls: nothing
here needs root or a lab (tests/lab runs the real thing)."""

from __future__ import annotations

from typing import Any

import pytest

from testbed.lab import FAULTS, Lab
from testbed.process import TestbedError

PRIMITIVES = ("signal_pbx", "set_fault", "clear_faults", "power_off", "power_on", "link",
              "kill_sipwatch", "start_sipwatch", "_udp_sip", "hang_crm_tools",
              "unhang_crm_tools", "kamcmd", "pbx_stop_fault", "fail_calls")  # fmt: skip

# fault -> (inject's calls, heal's calls), on node "n1": what the if-chains did
EXPECTED: dict[str, tuple[list[Any], list[Any]]] = {
    "crash": ([("signal_pbx", ("n1", "KILL"), {})], []),
    "hang": ([("signal_pbx", ("n1", "STOP"), {})], [("signal_pbx", ("n1", "CONT"), {})]),
    "503": ([("set_fault", ("n1", "code", 503), {})], [("clear_faults", ("n1",), {})]),
    "calls_fail": ([("fail_calls", ("n1",), {})], [("clear_faults", ("n1",), {})]),
    "drop": ([("set_fault", ("n1", "drop", 1), {})], [("clear_faults", ("n1",), {})]),
    "slow": ([("set_fault", ("n1", "delay_ms", 3000), {})], [("clear_faults", ("n1",), {})]),
    "power_off": ([("power_off", ("n1",), {})], [("power_on", ("n1",), {})]),
    "partition": (
        [("link", ("n1", "down"), {"switch_side": True})],
        [("link", ("n1", "up"), {"switch_side": True})],
    ),
    "ivr_down": (
        [("link", ("ivr", "down"), {"switch_side": True})],
        [("link", ("ivr", "up"), {"switch_side": True})],
    ),
    "sipwatch_killed": ([("kill_sipwatch", ("n1",), {})], [("start_sipwatch", ("n1",), {})]),
    "udp_dead": ([("_udp_sip", ("n1", "-A"), {})], [("_udp_sip", ("n1", "-D"), {})]),
    "crm_hang": ([("hang_crm_tools", ("n1",), {})], [("unhang_crm_tools", ("n1",), {})]),
    "ws_dead": ([("kamcmd", ("n1", "ws.disable"), {})], [("kamcmd", ("n1", "ws.enable"), {})]),
    "stop_fails": (
        [("pbx_stop_fault", ("n1", "fail"), {})],
        [("pbx_stop_fault", ("n1", None), {})],
    ),
    "stop_hangs": (
        [("pbx_stop_fault", ("n1", "hang"), {})],
        [("pbx_stop_fault", ("n1", None), {})],
    ),
}


def _recording_lab(calls: list[Any], fail: type[BaseException] | None = None) -> Lab:
    lab = Lab()

    def stand_in(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            calls.append((name, args, kwargs))
            if fail is not None:
                raise fail("stand-in failure")

        return record

    for name in PRIMITIVES:
        setattr(lab, name, stand_in(name))
    return lab


def test_every_fault_is_one_entry() -> None:
    assert set(FAULTS) == set(EXPECTED)


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_inject_and_heal_make_the_calls_they_always_made(fault: str) -> None:
    calls: list[Any] = []
    lab = _recording_lab(calls)
    lab.inject(fault, "n1")
    assert calls == EXPECTED[fault][0]
    calls.clear()
    lab.heal(fault, "n1")
    assert calls == EXPECTED[fault][1]


def test_an_unknown_fault_is_refused_and_heals_nothing() -> None:
    calls: list[Any] = []
    lab = _recording_lab(calls)
    with pytest.raises(ValueError, match="unknown fault 'nope'"):
        lab.inject("nope", "n1")
    lab.heal("nope", "n1")
    assert calls == []


@pytest.mark.parametrize("error", [TestbedError, OSError, ValueError])
def test_healing_a_hang_tolerates_a_pbx_gone_since(error: type[BaseException]) -> None:
    calls: list[Any] = []
    _recording_lab(calls, fail=error).heal("hang", "n1")
    assert calls == [("signal_pbx", ("n1", "CONT"), {})]
