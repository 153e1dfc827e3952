"""The lab's pre-seeded CIB (testbed.lab.build_cib) judged offline by Pacemaker's own scheduler
(crm_simulate on a CIB file, no cluster): in mode "fencing" a node that fails is fenced (a
reboot through st_pdu, the power controller's device) before g_pbx starts anywhere else; in
mode "sipwatch" (no STONITH) the group just moves. Milliseconds per case."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testbed.lab import NODES, PDU_IP, STONITH_TIMEOUT_S, LabConfig, build_cib

pytestmark = pytest.mark.skipif(shutil.which("crm_simulate") is None, reason="no crm_simulate")


def _simulate(cib: Path, *args: str) -> ET.Element:
    done = subprocess.run(["crm_simulate", "-x", str(cib), *args, "--output-as=xml"],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return ET.fromstring(done.stdout)


def _online(tmp_path: Path, mode: str) -> Path:
    cib = tmp_path / f"{mode}.xml"
    cib.write_text(build_cib(LabConfig(mode=mode)))
    settled = tmp_path / f"{mode}-settled.xml"
    ups = [a for n in NODES for a in ("-u", n)]
    _simulate(cib, *ups, "-S", "-O", str(settled))
    return settled


def _transition(root: ET.Element) -> list[str]:
    """The simulated transition's actions, in order: "fence n1", "start p_vip n2"..."""
    out = []
    for el in root.iter():
        if el.tag == "fencing_action":
            out.append(f"fence {el.get('target')} {el.get('op')}")
        elif el.tag == "rsc_action" and el.get("op") in ("start", "stop"):
            out.append(f"{el.get('op')} {el.get('resource')} {el.get('node')}")
    return out


def test_fencing_mode_fences_a_failed_node_before_the_group_starts_elsewhere(
    tmp_path: Path,
) -> None:
    cib = _online(tmp_path, "fencing")
    text = cib.read_text()
    assert 'name="stonith-enabled" value="true"' in text
    assert f'name="stonith-timeout" value="{STONITH_TIMEOUT_S}s"' in text
    assert f'value="{PDU_IP}"' in text and 'value="n1 n2 n3"' in text
    steps = _transition(_simulate(cib, "-f", "n1", "-S"))
    assert "fence n1 reboot" in steps, steps
    start = next(i for i, s in enumerate(steps) if s.startswith("start p_vip"))
    assert steps.index("fence n1 reboot") < start, steps


def test_without_fencing_the_group_moves_unfenced(tmp_path: Path) -> None:
    cib = _online(tmp_path, "sipwatch")
    assert 'name="stonith-enabled" value="false"' in cib.read_text()
    steps = _transition(_simulate(cib, "-f", "n1", "-S"))
    assert not [s for s in steps if s.startswith("fence")], steps
    assert any(s.startswith("start p_vip") for s in steps), steps
