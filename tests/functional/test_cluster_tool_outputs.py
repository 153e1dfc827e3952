"""Every Pacemaker tool sipwatch reads, printing garbage, nothing, a huge output, exiting with
each of Pacemaker's documented exit codes, or hanging (issue 17 §3, docs/bad-input.md): the
reader raises ClusterError naming the tool, with a short summary (never the output itself),
within the retry policy's bound.

The real tools cannot be made to misbehave like this, so a wrapper script in `bin_dir` (the
declared seam of PacemakerTools) stands in for the one under test; the others are real and
work on a file CIB, as in test_cluster_tools.py.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sipwatch.cluster import PacemakerTools, ToolPolicy
from sipwatch.errors import ClusterError
from testbed.pacemaker import FileCluster

#: CIB_file never names a live cluster (tests/functional/conftest.py: never_live).
pytestmark = pytest.mark.usefixtures("never_live")
HEALTH = "#health-sipwatch"
FAST = ToolPolicy(timeout_s=0.5, attempts=2, total_s=1.5, backoff_s=0.05)
#: Pacemaker's exit codes (crm_exit_t, `crm_error --list --exit`) a tool may end with,
#: and the shell's own (126 not executable, 127 not found, 137 killed).
EXIT_CODES = [1, 2, 3, 4, 5, 6, 7, 64, 65, 69, 70, 76, 78, 100, 101, 102, 103, 104, 105, 106]
EXIT_CODES += [107, 108, 109, 110, 111, 112, 124, 126, 127, 137]
#: Past the 64 MiB the runner keeps of a tool's output.
HUGE = 65 * 1024 * 1024 + 1

Reader = Callable[[PacemakerTools, Path], object]
READERS: dict[str, tuple[str, Reader]] = {
    "crm_node --name": ("crm_node", lambda t, d: t.local_node()),
    "cibadmin --query": ("cibadmin", lambda t, d: t.snapshot(d)),
    "cibadmin constraints": ("cibadmin", lambda t, d: t.bans("g_pbx")),
    "crm_simulate": ("crm_simulate", lambda t, d: t.simulate(d / "cib.xml")),
    "crm_attribute node": ("crm_attribute", lambda t, d: t.node_attribute("n1", HEALTH)),
    "crm_attribute option": ("crm_attribute", lambda t, d: t.cluster_option("no-quorum-policy")),
}
#: Where Pacemaker's "no such object" means "unset": the value is None, not an error.
UNSET_RC = {("crm_attribute", 105)}
BEHAVIOURS = {
    "garbage": "echo '<<<not xml &&& \x01'; exit 0",
    "empty": "exit 0",
    "huge": f"head -c {HUGE} /dev/zero | tr '\\0' x; exit 0",
    "huge-xml": f"printf '<cib>'; head -c {HUGE} /dev/zero | tr '\\0' ' '; printf '</cib>'",
    "hang": "sleep 30",
}


def tools_with(template: FileCluster, tmp_path: Path, tool: str, body: str) -> PacemakerTools:
    cluster = template.copy(tmp_path / "cib.xml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    assert shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin"), tool
    script = bin_dir / tool
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return PacemakerTools(cib_file=cluster.path, bin_dir=bin_dir, policy=FAST)


def refused(tools: PacemakerTools, read: Reader, workdir: Path, tool: str) -> ClusterError:
    started = time.monotonic()
    with pytest.raises(ClusterError) as err:
        read(tools, workdir)
    elapsed = time.monotonic() - started
    assert elapsed < FAST.total_s + FAST.timeout_s + 1.0, f"{elapsed:.1f} s"
    assert tool in err.value.summary, err.value.summary
    assert len(str(err.value)) < 500, "the summary must not carry the output"
    return err.value


@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
@pytest.mark.parametrize("reader", list(READERS))
def test_a_misbehaving_tool_is_a_cluster_error(
    template: FileCluster, tmp_path: Path, reader: str, behaviour: str
) -> None:
    tool, read = READERS[reader]
    tools = tools_with(template, tmp_path, tool, BEHAVIOURS[behaviour])
    # Exit 0 with no output is not XML: refused like garbage, never read as "unset".
    refused(tools, read, tmp_path, tool)


@pytest.mark.parametrize("rc", EXIT_CODES)
@pytest.mark.parametrize("reader", list(READERS))
def test_each_exit_code_is_a_cluster_error_with_the_code(
    template: FileCluster, tmp_path: Path, reader: str, rc: int
) -> None:
    tool, read = READERS[reader]
    tools = tools_with(template, tmp_path, tool, f"echo 'error: something {rc}' >&2; exit {rc}")
    if (tool, rc) in UNSET_RC:
        assert read(tools, tmp_path) is None
        return
    err = refused(tools, read, tmp_path, tool)
    assert err.rc == rc or str(rc) in err.summary, err.summary
