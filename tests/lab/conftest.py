"""The three-node HA lab (sipwatch.testbed.lab) for the fault suite: brought up once per
session, torn down however the session ends. Without root the whole suite is skipped, loudly.

    lab        session   the running lab (3 nodes, g_pbx on n1, every sipwatch green)
    steady     function  before each test: fail counts cleared, g_pbx settled and answering,
                         every sipwatch green; yields the active node
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sipwatch.testbed.lab import STATE_FILE, Lab, LabConfig
from sipwatch.testbed.netns import require_root


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    why = require_root()
    if why:
        pytest.skip(f"LAB TESTS SKIPPED: {why}")
    if STATE_FILE.exists():
        pytest.fail(f"a lab is already up ({STATE_FILE}): `python -m sipwatch.testbed.lab down`")
    the_lab = Lab(LabConfig())
    the_lab.up()
    try:
        yield the_lab
    finally:
        the_lab.down()
        STATE_FILE.unlink(missing_ok=True)


@pytest.fixture
def steady(lab: Lab) -> str:
    return lab.reset()
