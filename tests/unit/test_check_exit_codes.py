"""`sipwatch check`'s exit-code contract: one round of results -> exit code (pure parts)."""

from __future__ import annotations

from typing import Any

import pytest

from sipwatch.commands.check import exit_code, missing_tools, pbx_not_running
from sipwatch.model import EXTRA_MISSING_TOOL, Outcome, ProbeResult
from sipwatch.policy import Policy, one_shot


def r(probe: str, outcome: str, kind: str = "sip_options", **kw: Any) -> ProbeResult:
    return ProbeResult(probe=probe, kind=kind, target="t", outcome=Outcome(outcome), **kw)


MISSING = {EXTRA_MISSING_TOOL: "drbdsetup"}

ROWS = [
    ("green", [r("pbx", "ok")], 0),
    ("yellow (draining)", [r("pbx", "draining", retry_after_s=30)], 190),
    ("red", [r("pbx", "timeout")], 1),
    ("local error alone does not change the code", [r("pbx", "ok"), r("reg", "local_error")], 0),
    (
        "missing tool: 5",
        [r("pbx", "ok"), r("drbd", "local_error", kind="drbd", extra=MISSING)],
        5,
    ),
    (
        "missing tool wins over red and not-running",
        [
            r("pbx", "timeout"),
            r("proc", "down", kind="pbx_process"),
            r("drbd", "local_error", kind="drbd", extra=MISSING),
        ],
        5,
    ),
    (
        "missing tool reported by one target of a multi-target probe",
        [
            r(
                "pbx",
                "ok",
                targets=(r("pbx", "ok"), r("pbx", "local_error", extra={"missing_tool": "x"})),
            )
        ],
        5,
    ),
    ("missing_tool on a non-local outcome is not 5", [r("pbx", "ok", extra=MISSING)], 0),
    ("PBX not running: 7", [r("proc", "down", kind="pbx_process")], 7),
    (
        "PBX not running wins over the verdict",
        [r("proc", "down", kind="pbx_process", blocks_takeover=True), r("pbx", "refused")],
        7,
    ),
    ("a hung PBX is running but failed: 1", [r("proc", "hung", kind="pbx_process")], 1),
    ("down of another kind is not 7", [r("vip", "down", kind="vip")], 1),
]


@pytest.mark.parametrize("results, code", [x[1:] for x in ROWS], ids=[x[0] for x in ROWS])
def test_exit_code(results: list[ProbeResult], code: int) -> None:
    decision = one_shot(results, Policy(defaults={"role": "critical"}))
    assert exit_code(decision, tuple(results)) == code


def test_helpers_name_what_they_found() -> None:
    results = (
        r("a", "local_error", kind="drbd", extra={"missing_tool": "drbdsetup"}),
        r("b", "local_error", kind="x", extra={"missing_tool": "crm_mon"}),
        r("c", "local_error"),
    )
    assert missing_tools(results) == ["crm_mon", "drbdsetup"]
    assert not pbx_not_running(results)
    assert pbx_not_running((r("p", "down", kind="pbx_process"),))
