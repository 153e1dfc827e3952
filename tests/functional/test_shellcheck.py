"""The shell agents pass shellcheck with no finding at all (info and style included).

A finding is fixed, or silenced in the script with `# shellcheck disable=SCxxxx` (or
`source=`) and a comment saying why. shellcheck is one of the Makefile's APT_PACKAGES; a
missing one fails the test with the way to install it, as every other missing tool does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testbed.process import MissingToolError, require_tool

ROOT = Path(__file__).resolve().parents[2]

AGENTS = [
    "sipwatch/ocf/sipwatch",  # the product's OCF shim (ocf:sipwatch:sipwatch)
    "testbed/ocf/labpbx",  # the HA lab's PBX agent (ocf:sipwatch:labpbx)
]


@pytest.mark.parametrize("agent", AGENTS)
def test_shellcheck_is_clean(agent: str) -> None:
    try:
        shellcheck = require_tool("shellcheck")
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)
    done = subprocess.run(
        [shellcheck, "--format=gcc", "--severity=style", agent],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"shellcheck {agent}:\n{done.stdout}{done.stderr}"


def test_the_lab_agent_is_an_executable_posix_sh_script() -> None:
    agent = ROOT / "testbed/ocf/labpbx"
    assert agent.stat().st_mode & 0o111 == 0o111
    assert agent.read_text().startswith("#!/bin/sh\n")
    done = subprocess.run(["sh", "-n", str(agent)], capture_output=True, text=True, timeout=10,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
