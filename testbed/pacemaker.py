"""A Pacemaker cluster in a file, for tests and demos: real tools, no daemons, milliseconds.

Owns: building a CIB file with Pacemaker's own tools (cibadmin, crm_attribute, crm_simulate):
nodes, the PortSIP layout (group `g_pbx` = IPaddr2 VIP `p_vip` + PBX `p_pbx`, a Dummy),
quorum, a node-health-strategy; settling it (`crm_simulate -X`: the transition is carried out
and written back) and reading placement and attributes back from XML (`crm_mon
--output-as=xml`, `cibadmin --query`). Must not know: sipwatch.cluster — this is the
independent side of its functional tests, so it parses the XML itself.

Safety: every call runs with CIB_file set to the cluster's file, so nothing here can reach a
live cluster; every call has a timeout.

    cluster = FileCluster.build(tmp_path / "cib.xml")          # 3 nodes, g_pbx on n1
    cluster.set_property("node-health-strategy", "only-green")
    cluster.settle(); cluster.placement("g_pbx")                # frozenset({"n1"})
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from testbed.process import TestbedError, require_tool

__all__ = ["GROUP", "NODES", "FileCluster"]

NODES = ("n1", "n2", "n3")
GROUP = "g_pbx"
_TIMEOUT_S = 10.0

_GROUP_XML = """\
<group id="g_pbx">
  <meta_attributes id="g_pbx-meta">
    <nvpair id="g_pbx-meta-stickiness" name="resource-stickiness" value="100"/>
  </meta_attributes>
  <primitive id="p_vip" class="ocf" provider="heartbeat" type="IPaddr2">
    <instance_attributes id="p_vip-ia">
      <nvpair id="p_vip-ia-ip" name="ip" value="192.0.2.10"/>
      <nvpair id="p_vip-ia-cidr" name="cidr_netmask" value="24"/>
    </instance_attributes>
    <operations>
      <op id="p_vip-monitor-10s" name="monitor" interval="10s" timeout="20s"/>
    </operations>
  </primitive>
  <primitive id="p_pbx" class="ocf" provider="pacemaker" type="Dummy">
    <operations>
      <op id="p_pbx-monitor-10s" name="monitor" interval="10s" timeout="20s"/>
    </operations>
  </primitive>
</group>"""


class FileCluster:
    """A CIB file and the tools to change and inspect it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileCluster({self.path})"

    # --- building -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        path: Path,
        *,
        nodes: Sequence[str] = NODES,
        strategy: str = "migrate-on-red",
        first: str | None = None,
    ) -> FileCluster:
        """Nodes `nodes` (all online), stonith off, `strategy`, quorum, the group `g_pbx`
        settled on `first` (default: the first node)."""
        path = Path(path)
        cluster = cls(path)
        empty = cluster.run("cibadmin", "--empty")
        path.write_text(empty)
        for index, name in enumerate(nodes, start=1):
            node = f'<node id="{index}" uname="{name}"/>'
            cluster.run("cibadmin", "--create", "--scope", "nodes", "--xml-text", node)
        cluster.set_property("stonith-enabled", "false")
        cluster.set_property("node-health-strategy", strategy)
        cluster.run("cibadmin", "--create", "--scope", "resources", "--xml-text", _GROUP_XML)
        cluster.run("cibadmin", "--modify", "--xml-text", '<cib have-quorum="1" dc-uuid="1"/>')
        start = first or nodes[0]
        others = [n for n in nodes if n != start]
        # Only `start` online while the group is placed, then the others join: with the
        # stickiness the group stays where it started.
        cluster.simulate("--node-up", start)
        for name in others:
            cluster.simulate("--node-up", name)
        return cluster

    def copy(self, path: Path) -> FileCluster:
        shutil.copyfile(self.path, path)
        return FileCluster(path)

    # --- running tools ------------------------------------------------------------------------

    def run(self, tool: str, *args: str, check: bool = True) -> str:
        """Run a Pacemaker tool on this file; its stdout. TestbedError if it fails."""
        env = dict(os.environ)
        env.pop("CIB_file", None)
        env["CIB_file"] = str(self.path)  # always: never a live cluster
        env["LC_ALL"] = "C"
        try:
            done = subprocess.run(
                [require_tool(tool), *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TestbedError(f"{tool} {' '.join(args)}: no answer in {_TIMEOUT_S} s") from None
        if check and done.returncode != 0:
            raise TestbedError(
                f"{tool} {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def simulate(self, *args: str) -> None:
        """`crm_simulate -x FILE ARGS -X`: apply events (node up/down...), run the transition
        and write the result back."""
        self.run("crm_simulate", "--xml-file", str(self.path), *args, "--in-place", "--quiet")

    def settle(self) -> None:
        self.simulate()

    # --- changing -----------------------------------------------------------------------------

    def set_property(self, name: str, value: str) -> None:
        self.run("crm_attribute", "--type", "crm_config", "--name", name, "--update", value)

    def set_quorum(self, quorum: bool) -> None:
        self.run("cibadmin", "--modify", "--xml-text", f'<cib have-quorum="{int(quorum)}"/>')

    def set_node_attribute(
        self, node: str, name: str, value: str | None, *, lifetime: str = "reboot"
    ) -> None:
        verb = ("--update", value) if value is not None else ("--delete",)
        self.run("crm_attribute", "--node", node, "--name", name, "--lifetime", lifetime, *verb)

    def nodes_down(self, *nodes: str) -> None:
        self.simulate(*[arg for n in nodes for arg in ("--node-down", n)])

    def nodes_up(self, *nodes: str) -> None:
        self.simulate(*[arg for n in nodes for arg in ("--node-up", n)])

    # --- reading ------------------------------------------------------------------------------

    def cib(self) -> ET.Element:
        return ET.fromstring(self.run("cibadmin", "--query"))

    def mon(self) -> ET.Element:
        return ET.fromstring(self.run("crm_mon", "--one-shot", "--output-as=xml"))

    def placement(self, resource: str = GROUP) -> frozenset[str]:
        """Nodes where every member of `resource` (a group or primitive) is started, from
        `crm_mon --output-as=xml`. Empty: stopped."""
        mon = self.mon()
        for elem in mon.iter():
            if elem.tag in ("group", "resource") and elem.get("id") == resource:
                members = list(elem.iter("resource"))
                sets = [
                    frozenset(n.get("name", "") for n in m.findall("node"))
                    if m.get("role") == "Started"
                    else frozenset()
                    for m in members
                ]
                return frozenset.intersection(*sets) if sets else frozenset()
        raise TestbedError(f"no resource {resource!r} in crm_mon output")

    def node_attribute(self, node: str, name: str) -> str | None:
        """A transient (status section) node attribute."""
        root = self.cib()
        ids = {n.get("uname"): n.get("id") for n in root.iterfind("./configuration/nodes/node")}
        for state in root.iterfind("./status/node_state"):
            if state.get("id") != ids.get(node):
                continue
            for nv in state.iterfind("./transient_attributes/instance_attributes/nvpair"):
                if nv.get("name") == name:
                    return nv.get("value")
        return None

    def constraints(self) -> dict[str, ET.Element]:
        """Location constraints by id."""
        return {c.get("id", ""): c for c in self.cib().iterfind(".//constraints/rsc_location")}

    def node_health(self) -> dict[str, str]:
        """Each node's combined health as crm_mon shows it."""
        nodes = self.mon().iterfind("./nodes/node")
        return {n.get("name", ""): n.get("health", "") for n in nodes}
