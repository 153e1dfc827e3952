"""The three-node HA lab (testbed.lab) for the fault suite: brought up once per
test module (in the module's LAB_MODE, default "sipwatch"), torn down however the module
ends (LAB_CALLS = True: with calls, see testbed.lab.LabConfig.calls). Without root the
whole suite is skipped, loudly.

    lab        module    the running lab (3 nodes, g_pbx on n1, every sipwatch green)
    steady     function  before each test: fail counts cleared, g_pbx settled and answering,
                         every sipwatch green; yields the active node
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest

from testbed.lab import STATE_FILE, Lab, LabConfig, _is_lab_init, down_from_state, lab_up
from testbed.netns import require_root


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    why = require_root()
    if why:
        pytest.skip(f"LAB TESTS SKIPPED: {why}")
    if STATE_FILE.exists():
        # A state file whose node inits are all gone is what an interrupted run leaves (the
        # machine ended its processes): remove what it lists and go on. A live lab is
        # somebody else's: never touch it.
        state = json.loads(STATE_FILE.read_text())
        if any(pid and _is_lab_init(pid) for pid in state.get("inits", {}).values()):
            pytest.fail(f"a lab is already up ({STATE_FILE}): `python -m testbed.lab down`")
        warnings.warn(
            f"removed a stale lab left by an interrupted run: {down_from_state()}", stacklevel=1
        )
    config = LabConfig(
        mode=getattr(request.module, "LAB_MODE", "sipwatch"),
        calls=getattr(request.module, "LAB_CALLS", False),
    )
    with lab_up(config) as the_lab:
        yield the_lab


@pytest.fixture
def steady(lab: Lab) -> str:
    return lab.reset()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """A failed lab test (or its `steady` set-up) keeps the lab's logs before anything is torn
    down: a flaky failure is root-caused from the logs of that moment, not rerun away."""
    report = yield
    if getattr(report, "failed", False):
        the_lab = getattr(item, "funcargs", {}).get("lab")
        if isinstance(the_lab, Lab):
            kept = the_lab.keep_logs(item.name.replace("/", "_")[:80])
            if kept is not None:
                report.sections.append(("lab logs", f"kept in {kept}"))
    return report
