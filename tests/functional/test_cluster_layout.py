"""The crmsh configurations in docs/pacemaker.md, loaded into a file CIB and simulated.

The doc's blocks are taken verbatim (crmsh `configure load update` with CIB_file); the test
only adds what a lab without fencing needs (stonith-enabled=false, quorum). Then the real
shell agent (installed by `sipwatch ocf install`, a fake `sipwatch check` behind it) publishes
red, and crm_simulate shows what Pacemaker would do.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from sipwatch.commands.ocf import install
from testbed.pacemaker import FileCluster
from testbed.process import require_tool

DOC = Path(__file__).resolve().parents[2] / "docs" / "pacemaker.md"
NODES = ("pbx1", "pbx2", "pbx3")


def example(name: str) -> str:
    found = re.search(rf"<!-- example: {name} -->\n```text\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"no example {name!r} in {DOC}"
    return found.group(1)


def load(tmp_path: Path, name: str) -> FileCluster:
    """An empty 3-node CIB with the doc's configuration loaded by crmsh, settled on pbx1."""
    cluster = FileCluster(tmp_path / "cib.xml")
    cluster.path.write_text(cluster.run("cibadmin", "--empty"))
    for index, node in enumerate(NODES, start=1):
        xml = f'<node id="{index}" uname="{node}"/>'
        cluster.run("cibadmin", "--create", "--scope", "nodes", "--xml-text", xml)
    crm_file = tmp_path / f"{name}.crm"
    crm_file.write_text(example(name))
    env = {**os.environ, "CIB_file": str(cluster.path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [require_tool("crm"), "-F", "configure", "load", "update", str(crm_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    cluster.set_property("stonith-enabled", "false")  # a lab without fence devices
    cluster.run("cibadmin", "--modify", "--xml-text", '<cib have-quorum="1" dc-uuid="1"/>')
    cluster.nodes_up("pbx1")
    cluster.nodes_up("pbx2", "pbx3")
    return cluster


def clone_nodes(cluster: FileCluster) -> set[str]:
    mon = cluster.mon()
    return {
        n.get("name", "")
        for r in mon.iterfind(".//clone[@id='cl_sipwatch']/resource")
        if r.get("role") == "Started"
        for n in r.findall("node")
    }


def publish_with_agent(cluster: FileCluster, tmp_path: Path, check_rc: int) -> None:
    """start + depth-10 monitor of the installed shell agent on pbx1."""
    agent = install(tmp_path / "root")
    fake = tmp_path / "sipwatch"
    fake.write_text(f'#!/bin/sh\ncase "$1" in check) exit {check_rc};; esac\nexit 0\n')
    fake.chmod(0o755)
    config = tmp_path / "sipwatch.toml"
    config.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": "p_sipwatch",
        "OCF_RESKEY_CRM_meta_on_node": "pbx1",
        "OCF_RESKEY_CRM_meta_interval": "10000",
        "OCF_RESKEY_CRM_meta_timeout": "20000",
        "OCF_RESKEY_sipwatch": str(fake),
        "OCF_RESKEY_config": str(config),
        "OCF_RESKEY_state": str(tmp_path / "p_sipwatch.state"),
        "OCF_CHECK_LEVEL": "10",
        "CIB_file": str(cluster.path),
        "HA_LOGFACILITY": "none",
    }
    for action in ("start", "monitor"):
        done = subprocess.run(
            [str(agent), action], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, (action, done.stderr)


def test_health_clone_moves_the_group_and_keeps_reporting(tmp_path: Path) -> None:
    cluster = load(tmp_path, "crm-health")
    assert cluster.placement("g_pbx") == {"pbx1"}
    assert clone_nodes(cluster) == set(NODES)

    publish_with_agent(cluster, tmp_path, check_rc=1)  # sipwatch check: red
    assert cluster.node_attribute("pbx1", "#health-sipwatch") == "red"
    cluster.settle()
    assert cluster.placement("g_pbx") in ({"pbx2"}, {"pbx3"})
    # allow-unhealthy-nodes: the health agent keeps running on the red node, so its
    # attribute stays; without it the clone instance on pbx1 would be stopped (next test).
    assert clone_nodes(cluster) == set(NODES)
    assert cluster.node_health()["pbx1"] == "red"


def test_without_allow_unhealthy_nodes_the_health_agent_is_stopped(tmp_path: Path) -> None:
    cluster = load(tmp_path, "crm-health")
    meta = ("--meta", "--delete-parameter", "allow-unhealthy-nodes")
    cluster.run("crm_resource", "--resource", "cl_sipwatch", *meta)
    cluster.set_node_attribute("pbx1", "#health-sipwatch", "red")
    cluster.settle()
    assert clone_nodes(cluster) == {"pbx2", "pbx3"}  # its stop would clear the attribute


def test_yellow_moves_only_under_only_green(tmp_path: Path) -> None:
    cluster = load(tmp_path, "crm-health")
    publish_with_agent(cluster, tmp_path, check_rc=190)
    assert cluster.node_attribute("pbx1", "#health-sipwatch") == "yellow"
    cluster.settle()
    assert cluster.placement("g_pbx") == {"pbx1"}  # migrate-on-red ignores yellow
    cluster.set_property("node-health-strategy", "only-green")
    cluster.settle()
    assert cluster.placement("g_pbx") in ({"pbx2"}, {"pbx3"})


def test_service_mode_failure_moves_the_whole_group(tmp_path: Path) -> None:
    cluster = load(tmp_path, "crm-service")
    assert cluster.placement("g_pbx") == {"pbx1"}
    cluster.simulate("--op-inject", "p_sipmon_monitor_10000@pbx1=1")
    placed = {r: cluster.placement(r) for r in ("p_vip", "p_pbx", "p_sipmon")}
    target = placed["p_vip"]
    assert target in ({"pbx2"}, {"pbx3"})
    assert placed == {"p_vip": target, "p_pbx": target, "p_sipmon": target}


def test_service_mode_degraded_result_alone_does_not_recover(tmp_path: Path) -> None:
    """190 from the monitor: the scheduler schedules no recovery as long as no fail count
    exists — and Pacemaker's controller does not count 190 as a failure (it maps it to 0
    first). crm_simulate's injector does bump the fail count: with it, the group moves
    (migration-threshold=1); without it, it stays."""
    cluster = load(tmp_path, "crm-service")
    injected = tmp_path / "injected.xml"
    spec = "p_sipmon_monitor_10000@pbx1=190"
    cluster.run("crm_simulate", "--xml-file", str(cluster.path), "--op-inject", spec,
                "--run", "--quiet", "--save-input", str(injected))  # fmt: skip
    injected.replace(cluster.path)  # the 190 result recorded, no transition run yet

    as_injected = cluster.copy(tmp_path / "as-injected.xml")
    as_injected.settle()
    assert as_injected.placement("g_pbx") in ({"pbx2"}, {"pbx3"})  # the injector's fail count

    failcount = "fail-count-p_sipmon#monitor_10000"
    assert cluster.node_attribute("pbx1", failcount) == "1"
    cluster.set_node_attribute("pbx1", failcount, None)
    cluster.settle()
    assert cluster.placement("g_pbx") == {"pbx1"}


@pytest.mark.parametrize("name", ["crm-health", "crm-service"])
def test_doc_examples_have_no_fencing_shortcut(name: str) -> None:
    assert "stonith-enabled" not in example(name)  # the doc keeps fencing on
