"""A three-node SIP PBX HA lab: real corosync + Pacemaker + Kamailio + sipwatch in namespaces.

Owns: bringing the lab up and tearing it down (one call each; also `python -m
testbed.lab up|down|status`), the fault injectors the fault suite and the failover
benchmark use, and the observations they assert on (who holds the VIP, who answers the
client's OPTIONS, where Pacemaker placed the group, sipwatch's audit log).
Must not know: sipwatch's own cluster code — this is the independent side of the lab tests.

Topology (addresses exist only inside the lab's namespaces; nothing here ever sends a packet
to them from the host namespace — host-side code only runs `ip -n`, `nsenter` and reads files):

    swlab-sw     the switch: bridge br0, one veth port per host
    swlab-n1..3  PBX nodes 10.250.0.11-13, eth0; VIP 10.250.0.100 (p_vip, IPaddr2)
    swlab-cl     the phones: 10.250.0.50
    swlab-ivr    the IVR/Queue server: 10.250.0.60 (a Kamailio answering OPTIONS)
    swlab-pdu    mode fencing: the power controller's port, 10.250.0.70 (TCP 7410)

Each node runs in its own network, mount, UTS and PID namespace (lab_init.py is its PID 1):
private /etc/corosync, /var/lib/{corosync,pacemaker}, logs, a copy of resource.d holding the
`sipwatch` provider (the OCF shim and `labpbx`, the lab's PBX agent), tmpfs /run and /dev/shm.
corosync (knet, token 1000) and pacemakerd start from a pre-seeded CIB; the group g_pbx =
p_vip + p_pbx prefers n1. mode "sipwatch": p_pbx is ocf:sipwatch:labpbx and `sipwatch run`
publishes #health-sipwatch (node-health-strategy=migrate-on-red); mode "stock": p_pbx is
ocf:heartbeat:kamailio (sipsak monitor, migration-threshold=1), no sipwatch — the baseline;
mode "shim": the OCF shim ocf:sipwatch:sipwatch (mode=service, OCF_CHECK_LEVEL=10, 1 s) is
the group's third member and the path to Pacemaker: its monitor runs `sipwatch check`, which
asks the node's `sipwatch run` (cluster agent "none": it probes, answers, and runs the quorum
guard); mode "fencing": as "sipwatch" with STONITH: stonith-enabled=true, one device st_pdu
(stonith:fence_swlab, testbed/fence/, overlaid on each node's /usr/sbin) for the three nodes,
served by the lab's power controller (testbed/power.py: a BMC/PDU stand-in in this process,
its socket on the management port swlab-pdu 10.250.0.70:7410; off = the node's init killed
and its cable pulled, on = the bring-up of one node).

Safety: every external command is an argv list with a timeout; every wait is bounded;
teardown kills only the node inits this lab started (by PID, after checking the command line:
killing a PID namespace's init ends every process in it) and the IVR Kamailio (by PID), and
deletes only the namespaces and directories its state file lists.

Layout: `Lab` is built in layers, each a class named for its part: LabNodes (what was started,
commands inside a node) <- LabObserver (observations and bounded waits) <- LabBuilder
(bring-up, teardown) <- LabFaults (fault primitives; `inject`/`heal` through FAULTS, one
entry per fault name) <- Lab (one fault measured, back to steady). The PBX agent is the file
ocf/labpbx; the pieces of each node's configuration are the functions after the classes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from testbed import rawsip
from testbed.calls import CallHolder, CallReport
from testbed.kamailio import Dmq, KamailioPeer, _render, start_kamailio
from testbed.netns import Netns, run_in
from testbed.power import PowerController
from testbed.process import TestbedError, log_tail, require_tool, stop_process
from testbed.tcp_phone import TcpPhone

__all__ = ["FAULTS", "NODES", "VIP", "Failover", "Lab", "LabConfig", "lab_up"]

NODES = ("n1", "n2", "n3")
SUBNET = "10.250.0"
NODE_IP = {"n1": f"{SUBNET}.11", "n2": f"{SUBNET}.12", "n3": f"{SUBNET}.13"}
VIP = f"{SUBNET}.100"
CLIENT_IP = f"{SUBNET}.50"
IVR_IP = f"{SUBNET}.60"
PREFIX = "swlab"
BASE_DIR = Path("/tmp/sipwatch-lab")
STATE_FILE = BASE_DIR / "state.json"
RUN = "/run/sipwatch-lab"  # inside each node (tmpfs)
PBX_PIDFILE = f"{RUN}/kamailio.pid"
PBX_CTL = f"{RUN}/kamailio_ctl"
CMD_TIMEOUT_S = 15.0
# LabConfig(calls=True): the IVR answers calls (sipp, RTP echo) on IVR_CALL_PORT; each PBX
# replicates its dialogs over DMQ from DMQ_PORT on its node address to the dialog keepers,
# one Kamailio per node on KEEPER_PORT that only holds the dialogs (outside Pacemaker, so
# the standby nodes know the calls before their PBX starts).
IVR_CALL_PORT = 5080
IVR_MEDIA_PORT = 6000
DMQ_PORT = 5062
KEEPER_PORT = 5070
DLG_H_STEP = 6  # three PBX configs and three keepers: each its own h_id_start
SIPWATCH_MODES = ("sipwatch", "shim", "fencing")  # the modes that run `sipwatch run`
HEALTH_MODES = ("sipwatch", "fencing")  # the modes whose sipwatch publishes #health-sipwatch
PDU_IP = f"{SUBNET}.70"  # mode fencing: the power controller's management port
PDU_PORT = 7410
PDU_SECRET = f"{RUN}/power.secret"  # inside each node (tmpfs), copied there at boot
FENCE_AGENT = resources.files("testbed").joinpath("fence", "fence_swlab")
#: mode fencing: stonith-timeout and the agent's power_timeout. Sized from the fence times
#: measured here (a reboot off -> confirmed in about 1 s, see docs/lab.md): the agent's own
#: bound first, Pacemaker's above it with room for one retry.
FENCE_POWER_TIMEOUT_S = 10
#: mode fencing: seconds between the controller's "on" and the node's boot (a server's
#: firmware takes longer). Without it a fenced node was back within a second, before
#: Pacemaker had recovered its group elsewhere, and took the group back (its location
#: preference): a race no real reboot wins.
BOOT_DELAY_S = 5.0
STONITH_TIMEOUT_S = 25
SHIM_CONFIG = f"{RUN}/sipwatch.toml"  # mode shim: the config the OCF shim's check reads
#: what fault "crm_hang" makes hang: every tool sipwatch's cluster agent may run
CRM_TOOLS = ("attrd_updater", "cibadmin", "crm_attribute", "crm_mon", "crm_node",
             "crm_resource", "crm_simulate")  # fmt: skip

# The lab's PBX agent (testbed/ocf/labpbx): Kamailio with the testbed config (fault switches),
# and a stop that ends a hung PBX at once: a process group whose main process is stopped
# (SIGSTOP, state T) is SIGKILLed without waiting; a running one gets SIGTERM and `stop_grace`
# seconds. Installed into every node's resource.d as ocf:sipwatch:labpbx.
LABPBX_AGENT = resources.files("testbed").joinpath("ocf", "labpbx")

COROSYNC_CONF = """\
totem {
    version: 2
    cluster_name: swlab
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}
nodelist {
@@NODES@@
}
quorum {
    provider: corosync_votequorum
}
logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: no
    to_stderr: no
    timestamp: on
}
"""

# The lab policy: shipped "fast" with the graces shortened so consecutive faults in one test
# module are judged at once (a node that just took over would otherwise stay yellow 15 s).
LAB_POLICY_OVERRIDES = {"startup_grace_s": "3.0", "takeover_grace_s": "3.0"}


@dataclass(frozen=True)
class LabConfig:
    mode: str = "sipwatch"  # "sipwatch", "shim" (OCF shim in the group), "stock" or
    # "fencing" (as "sipwatch", with STONITH: the power controller and fence_swlab)
    monitor_interval_s: float = 1.0  # p_pbx monitor interval
    stop_timeout_s: float = 10.0  # p_pbx stop timeout (stock: 30 s as in the baseline)
    probe_interval_s: float = 1.0  # sipwatch probes
    # The lab policy's confirm_interval_s (None: the shipped "fast" policy's; 0: confirm runs
    # off, as before issue 15 — the benchmark's baseline for the gain).
    confirm_interval_s: float | None = None
    sipwatch_python: str = sys.executable
    quorum_guard: bool = True  # sipwatch's release_vip_without_quorum (Lab.set_quorum_guard)
    # Calls (issue 12 §4): the IVR answers calls with RTP echo, every PBX record-routes on
    # the VIP and (but the stock agent's) replicates dialogs to a keeper per node (DMQ),
    # sipwatch gets a call probe through the VIP. Off: the lab as the fault suite runs it.
    calls: bool = False


@dataclass
class CallsFailover:
    """Lab.measure_calls: one fault with calls up; times are time.monotonic()."""

    fault: str
    old: str
    new: str
    seconds: float  # fault -> the client's OPTIONS answered by `new`
    fault_at: float
    served_at: float
    reports: list[CallReport]
    known: set[str]  # the calls the new node's PBX listed (dialog replication)
    max_holders: int  # VIP holders at once, at most

    @property
    def kept(self) -> int:
        """Calls that survived: a refresh answered 2xx after the new node served, BYE 200."""
        return sum(r.survived and r.answered_after(self.served_at) > 0 for r in self.reports)

    def gaps(self) -> list[float | None]:
        """Per call: last refresh answered before the fault -> first answered after it."""
        return [r.gap_around(self.fault_at) for r in self.reports]

    def media_gaps(self) -> list[float | None]:
        return [r.media_gap() for r in self.reports]

    def summary(self) -> dict[str, object]:
        gaps = [g for g in self.gaps() if g is not None]
        media = [g for g in self.media_gaps() if g is not None]
        return {
            "fault": self.fault,
            "old": self.old,
            "new": self.new,
            "failover_s": round(self.seconds, 3),
            "calls": len(self.reports),
            "kept": self.kept,
            "known_by_new_node": len(self.known),
            "signalling_gap_s": [round(g, 3) for g in gaps],
            "signalling_gap_max_s": round(max(gaps), 3) if gaps else None,
            "media_gap_max_s": round(max(media), 3) if media else None,
            "updates_lost": sum(r.updates_lost for r in self.reports),
            "updates_failed_after_fault": sum(r.failed_after(self.fault_at) for r in self.reports),
            "bye_status": sorted({str(r.bye_status) for r in self.reports}),
            "vip_on_two_nodes": self.max_holders > 1,
        }


@dataclass
class Node:
    name: str
    netns: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None  # `unshare` (our child)
    init_pid: int = 0  # PID 1 of the node, as the host sees it

    def root(self, path: str) -> Path:
        """A path inside this node's mount namespace, readable from the host."""
        return Path(f"/proc/{self.init_pid}/root{path}")


#: The HTTP port of each node's `sipwatch run` (loopback inside the node).
SIPWATCH_HTTP_PORT = 8080
#: The PBX's SIP-over-WebSocket (WS) port on the VIP; PortSIP's default WebSocket transport is
#: WSS on 5065: the lab has no TLS on its nodes, so WS shows the same failure without the certs.
WS_PORT = 5066
#: `[daemon] reassert_s` of the lab's sipwatch (see sipwatch_toml).
REASSERT_S = 5.0
#: Where the lab's logs are kept when a bring-up or a test fails (see Lab.keep_logs).
KEEP_DIR = Path(os.environ.get("SIPWATCH_LAB_KEEP_DIR", "/tmp/sipwatch-lab-kept"))
#: The checkout the lab runs from: the node inits import `testbed` from it (PYTHONPATH), and
#: the lab policy starts from its policies/fast.toml.
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LabNodes:
    """What the lab started (the state file lists it, for `lab down` from another process)
    and running commands inside a node."""

    config: LabConfig = field(default_factory=LabConfig)
    base: Path = BASE_DIR
    nodes: dict[str, Node] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    ivr: KamailioPeer | None = None
    ivr_sipp: subprocess.Popen[bytes] | None = None  # calls: the IVR answering calls
    up_s: float = 0.0
    _impaired: dict[str, tuple[float, bool]] = field(default_factory=dict)
    _hung_tools: set[str] = field(default_factory=set)
    power: PowerController | None = None  # mode fencing: the lab's BMC/PDU
    quorum_guard: bool = True
    _power_lock: threading.RLock = field(default_factory=threading.RLock)
    _tearing_down: bool = False

    def _write_state(self) -> None:
        state = {
            "namespaces": self.namespaces,
            "inits": {n.name: n.init_pid for n in self.nodes.values()},
            "ivr_pid": self.ivr.pid if self.ivr else 0,
            "ivr_sipp_pid": self.ivr_sipp.pid if self.ivr_sipp else 0,
            "base": str(self.base),
            "mode": self.config.mode,
        }
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(state, indent=1))

    def nsenter(self, name: str, argv: list[str]) -> list[str]:
        node = self.nodes[name]
        if not node.init_pid:
            raise TestbedError(f"{name} is not running")
        return [require_tool("nsenter"), "-t", str(node.init_pid), "-m", "-n", "-u", "-p",
                "--", *argv]  # fmt: skip

    def exec(
        self, name: str, argv: list[str], *, timeout_s: float = CMD_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside node `name` and wait (bounded)."""
        return _run(self.nsenter(name, argv), timeout_s=timeout_s, check=check)

    def spawn(self, name: str, argv: list[str], tag: str, log: Path | None = None) -> int:
        """Start a daemon inside node `name`, in its own session, orphaned to the node's init;
        its PID (inside the node) goes to NODE_DIR/pids/TAG."""
        node = self.nodes[name]
        out = str(log) if log else "/dev/null"
        script = 'setsid "$@" >"$OUT" 2>&1 </dev/null & echo $!'
        done = _run(self.nsenter(name, ["env", f"OUT={out}", "sh", "-c", script, "sh", *argv]))
        pid = int(done.stdout.strip())
        (node.dir / "pids").mkdir(exist_ok=True)
        (node.dir / "pids" / tag).write_text(str(pid))
        return pid

    def node_pid(self, name: str, tag: str) -> int:
        return int((self.nodes[name].dir / "pids" / tag).read_text())


class LabObserver(LabNodes):
    """What the tests and the benchmark assert on, read from outside the nodes: who holds the
    VIP, who answers the client's OPTIONS, where Pacemaker placed g_pbx, each sipwatch's
    published health and audit log; and the bounded waits for each."""

    def vip_holders(self) -> list[str]:
        """Nodes whose eth0 holds the VIP right now (`ip -n NODE addr`)."""
        held = []
        for name in NODES:
            out = _run(["ip", "-n", f"{PREFIX}-{name}", "-o", "-4", "addr", "show"],
                       check=False).stdout  # fmt: skip
            if f" {VIP}/" in out:
                held.append(name)
        return held

    def cut_off(self, name: str) -> bool:
        """The node's eth0 has no carrier (its switch port is down or gone): nothing it holds
        can be reached from the LAN, nor can it answer ARP there."""
        out = _run(["ip", "-n", f"{PREFIX}-{name}", "-o", "link", "show", "dev", "eth0"],
                   check=False).stdout  # fmt: skip
        return not out or "NO-CARRIER" in out or "state UP" not in out

    def live_nodes(self) -> list[str]:
        # init_pid: a node whose boot (mode fencing: by the power controller, in its thread)
        # has started `unshare` but not yet found its init is not live yet
        return [
            n
            for n, node in self.nodes.items()
            if node.proc and node.proc.poll() is None and node.init_pid
        ]

    def crm_mon(self, via: str | None = None) -> ET.Element:
        if via in self._hung_tools:  # ask a node whose tools work
            via = None
        nodes = [via] if via else self.tool_nodes()
        for name in nodes:
            try:
                done = self.exec(name, ["crm_mon", "-1", "--output-as=xml"], check=False)
            except TestbedError:  # powered off or rebooting since the list was made
                continue
            if done.returncode == 0:
                return ET.fromstring(done.stdout)
        raise TestbedError("crm_mon failed on every live node")

    def tool_nodes(self) -> list[str]:
        """Live nodes whose Pacemaker tools work (not hung by fault "crm_hang")."""
        return [n for n in self.live_nodes() if n not in self._hung_tools]

    def placement(self, rsc: str = "p_pbx", via: str | None = None) -> list[str]:
        return _started_on(self.crm_mon(via), rsc)

    @staticmethod
    def group_started(root: ET.Element, node: str) -> bool:
        """In crm_mon's XML `root`: every member of g_pbx is started on `node`, none with an
        action in flight (a fault injected while the group's last start runs would be judged
        on that start). A recurring monitor in flight ("Monitoring": Pacemaker 2.1 records
        pending operations) is not: in shim mode the 1 s monitor was pending on most looks
        of a loaded machine, and the group never counted as settled."""
        group = next((g for g in root.iter("group") if g.get("id") == "g_pbx"), None)
        if group is None:
            return False
        members = list(group.iter("resource"))
        return bool(members) and all(
            r.get("role") == "Started"
            and r.get("pending") in (None, "", "Monitoring")
            and [n.get("name") for n in r.iter("node")] == [node]
            for r in members
        )

    def active(self) -> str:
        holders = self.vip_holders()
        if len(holders) != 1:
            raise TestbedError(f"VIP held by {holders}")
        return holders[0]

    def health(self, name: str, via: str | None = None) -> str | None:
        if via is None and name in self._hung_tools:
            via = self.tool_nodes()[0]
        done = self.exec(via or name, ["attrd_updater", "-Q", "-n", "#health-sipwatch",
                                       "-N", name], check=False)  # fmt: skip
        m = re.search(r'value="([^"]*)"', done.stdout)
        return m.group(1) if m else None

    def audit(self, name: str) -> list[dict[str, Any]]:
        path = self.nodes[name].dir / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def client_options(self, timeout_s: float = 0.3) -> str | None:
        """One OPTIONS from the client namespace to the VIP: the answering node ("n1"...), or
        None without a 200."""
        return run_in(Netns(f"{PREFIX}-cl"), _options_once, timeout_s, timeout_s=timeout_s + 5)

    def wait_served_by(
        self, node: str | None = None, *, not_by: str | None = None, timeout_s: float = 30.0
    ) -> tuple[str, float]:
        """Poll the client's OPTIONS via the VIP (every 50 ms, inside the client namespace)
        until a node (`node`, or any but `not_by`) answers 200; (node, seconds waited)."""
        got = run_in(
            Netns(f"{PREFIX}-cl"),
            _poll_served,
            node,
            not_by,
            timeout_s,
            timeout_s=timeout_s + 10,
        )
        if got is None:
            raise TestbedError(
                f"no 200 via the VIP from {node or f'a node other than {not_by}'} "
                f"within {timeout_s} s (holders {self.vip_holders()})"
            )
        return got

    def wait_placement(self, timeout_s: float = 60.0) -> str:
        """Wait until g_pbx runs on exactly one node that also holds the VIP; that node."""
        box: dict[str, str] = {}

        def settled() -> bool:
            try:
                root = self.crm_mon()
            except TestbedError as exc:
                box["last"] = str(exc)
                return False
            where = _started_on(root, "p_pbx")
            holders = self.vip_holders()
            if len(where) == 1 and holders == where and self.group_started(root, where[0]):
                box["node"] = where[0]
                return True
            group = next((g for g in root.iter("group") if g.get("id") == "g_pbx"), None)
            members = [] if group is None else list(group.iter("resource"))
            box["last"] = f"p_pbx on {where}, VIP on {holders}, members " + ", ".join(
                f"{r.get('id')}:{r.get('role')}/{r.get('pending') or '-'}"
                f"@{[n.get('name') for n in r.iter('node')]}"
                for r in members
            )
            return False

        try:
            _wait(settled, timeout_s, "g_pbx did not settle on one node")
        except TestbedError as exc:  # what the last look saw: the cause, not just the symptom
            raise TestbedError(f"{exc}; last look: {box.get('last', '-')}") from None
        return box["node"]

    def wait_health_green(self, timeout_s: float = 30.0) -> None:
        live = self.live_nodes()
        via = self.tool_nodes()[0]
        _wait(
            lambda: all(self.health(n, via=via) == "green" for n in live),
            timeout_s,
            "sipwatch did not publish green on every node",
        )

    @contextlib.contextmanager
    def watch_vip(self, period_s: float = 0.1) -> Iterator[VipWatch]:
        """Poll `ip -n NODE addr` for every node in a thread while the block runs."""
        watch = VipWatch(self, period_s)
        watch.start()
        try:
            yield watch
        finally:
            watch.stop()


class LabBuilder(LabObserver):
    """Bring-up and teardown: the switch and its hosts, each node's files (corosync.conf, the
    pre-seeded CIB, kamailio.cfg, sipwatch.toml: see the config pieces below), its init and
    daemons; `down` kills by PID and removes only what the lab made."""

    def up(self, timeout_s: float = 90.0) -> None:
        """Build everything, start the cluster, wait until the client's OPTIONS via the VIP
        are answered by n1 and every sipwatch is green. Tears down what it made on failure."""
        if os.geteuid() != 0:
            raise TestbedError("the lab needs root (namespaces, mounts)")
        if STATE_FILE.exists():
            raise TestbedError(f"a lab is already up ({STATE_FILE}): run `lab down` first")
        for tool in ("ip", "unshare", "nsenter", "corosync", "pacemakerd", "kamailio", "tc"):
            require_tool(tool)
        started = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            self.quorum_guard = self.config.quorum_guard
            self._write_state()
            self._network()
            self._ivr()
            if self.config.mode == "fencing":
                self._power_controller()
            for name in NODES:
                self._prepare_node(name)
            self._write_state()
            for name in NODES:
                self.start_node(name)
            self.wait_placement(timeout_s=timeout_s)
            self.wait_served_by(self.active(), timeout_s=timeout_s)
            if self.config.mode in HEALTH_MODES:
                self.wait_health_green(timeout_s=timeout_s)
        except BaseException:
            self.keep_logs("up-failed")
            self.down()
            raise
        self.up_s = time.monotonic() - started

    def keep_logs(self, why: str) -> Path | None:
        """Copy every node's logs (sipwatch, Pacemaker, corosync, init) and the audit logs out
        of the lab before it is torn down, to KEEP_DIR/<time>-<why>/: a flaky lab failure must
        be root-caused from the logs caught at the failure, and teardown removes the lab's
        directories. Returns the directory (None when there was nothing to keep)."""
        if not self.base.exists():
            return None
        dest = KEEP_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{why}"
        with contextlib.suppress(OSError):
            for d in sorted(self.base.iterdir()):
                if not d.is_dir():
                    continue
                for f in d.rglob("*"):
                    if f.is_file() and (f.suffix in (".log", ".jsonl") or "log" in f.parent.name):
                        target = dest / d.name / f.relative_to(d)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(f, target)
            print(f"lab logs kept in {dest}", file=sys.stderr)
            return dest
        return None

    def _ns(self, tag: str) -> str:
        name = f"{PREFIX}-{tag}"
        if Path(f"/run/netns/{name}").exists():
            raise TestbedError(f"namespace {name} exists already (a lab not torn down?)")
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def _port(self, ns: str, tag: str, address: str) -> None:
        """veth eth0 in `ns` <-> port p-TAG on the switch's bridge."""
        sw = f"{PREFIX}-sw"
        _run(["ip", "-n", sw, "link", "add", f"p-{tag}", "type", "veth",
              "peer", "name", "eth0", "netns", ns])  # fmt: skip
        _run(["ip", "-n", sw, "link", "set", f"p-{tag}", "master", "br0", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def _network(self) -> None:
        sw = self._ns("sw")
        _run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", sw, "link", "set", "br0", "up"])
        for name in NODES:
            self._ns(name)
            self._port(f"{PREFIX}-{name}", name, NODE_IP[name])
        self._port(self._ns("cl"), "cl", CLIENT_IP)
        self._port(self._ns("ivr"), "ivr", IVR_IP)
        if self.config.mode == "fencing":
            self._port(self._ns("pdu"), "pdu", PDU_IP)

    def _power_controller(self) -> None:
        """Mode fencing: the power controller, listening on PDU_IP:PDU_PORT inside swlab-pdu
        (its socket is made there; this process serves it), switching this lab's nodes."""
        secret = self.base / "power.secret"
        secret.write_text(os.urandom(24).hex() + "\n")
        secret.chmod(0o600)

        def bind() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((PDU_IP, PDU_PORT))
            return sock

        sock = run_in(Netns(f"{PREFIX}-pdu"), bind, timeout_s=10)
        self.power = PowerController(sock, secret.read_text().strip().encode(), self,
                                     log_path=self.base / "power.jsonl")  # fmt: skip
        self.power.start()

    def _ivr(self) -> None:
        self.ivr = start_kamailio(
            self.base / "ivr",
            host=IVR_IP,
            tls=False,
            netns=Netns(f"{PREFIX}-ivr"),
            server_name="ivr",
        )
        if self.config.calls:
            self._ivr_calls()

    def _ivr_calls(self) -> None:
        """sipp as the IVR answering calls (testbed/sipp_uas_call.xml: 200 with SDP, UPDATEs
        answered for as long as the call lasts, BYE), every RTP packet echoed, as many calls
        as come, until the lab goes down."""
        rundir = self.base / "ivr-sipp"
        rundir.mkdir(parents=True, exist_ok=True)
        scenario = Path(str(resources.files("testbed").joinpath("sipp_uas_call.xml")))
        argv = [
            require_tool("ip"), "netns", "exec", f"{PREFIX}-ivr", require_tool("sipp"),
            "-sf", str(scenario), "-i", IVR_IP, "-p", str(IVR_CALL_PORT),
            "-mi", IVR_IP, "-mp", str(IVR_MEDIA_PORT), "-rtp_echo", "-nd", "-nostdin",
            "-trace_err", "-error_file", str(rundir / "errors.log"),
            "-trace_stat", "-fd", "1", "-stf", str(rundir / "stat.csv"),
        ]  # fmt: skip
        with (rundir / "screen.log").open("ab") as out:
            self.ivr_sipp = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=rundir, start_new_session=True,
            )  # fmt: skip
        self._write_state()
        _wait(
            lambda: f":{IVR_CALL_PORT:04X}" in _run(
                ["ip", "netns", "exec", f"{PREFIX}-ivr", "cat", "/proc/net/udp"]
            ).stdout or self.ivr_sipp.poll() is not None,
            10.0, "the IVR's sipp did not bind its port",
        )  # fmt: skip
        if self.ivr_sipp.poll() is not None:
            raise TestbedError(f"the IVR's sipp exited: {log_tail(rundir / 'screen.log', 10)}")

    def ivr_call_stats(self) -> dict[str, str]:
        """The IVR sipp's latest counters (CurrentCall, SuccessfulCall(C), FailedCall(C)...)."""
        try:
            rows = (self.base / "ivr-sipp" / "stat.csv").read_text(errors="replace").splitlines()
        except OSError:
            return {}
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0].split(";"), rows[-1].split(";"), strict=False))

    def _prepare_node(self, name: str) -> None:
        d = self.base / name
        if d.exists():
            shutil.rmtree(d)
        for sub in ("etc-corosync", "var-lib-corosync", "log-pacemaker", "log-corosync"):
            (d / sub).mkdir(parents=True)
        for sub in ("cib", "pengine", "blackbox", "cores"):
            (d / "var-lib-pacemaker" / sub).mkdir(parents=True)
        _chown_tree(d / "var-lib-pacemaker")
        _chown_tree(d / "log-pacemaker")
        shutil.copytree("/usr/lib/ocf/resource.d", d / "resource.d", symlinks=True)
        provider = d / "resource.d" / "sipwatch"
        provider.mkdir(exist_ok=True)
        agent = provider / "labpbx"
        agent.write_text(LABPBX_AGENT.read_text())
        agent.chmod(0o755)
        _run([str(Path(self.config.sipwatch_python).parent / "sipwatch"), "ocf", "install",
              "--root", str(d / "shim")])  # fmt: skip
        shim = d / "shim" / "usr/lib/ocf/resource.d/sipwatch/sipwatch"
        shutil.copy2(shim, provider / "sipwatch")
        if self.config.mode == "fencing":  # lab_init lays it over the node's /usr/sbin
            (d / "fence").mkdir()
            agent = d / "fence" / "fence_swlab"
            agent.write_text(FENCE_AGENT.read_text())
            agent.chmod(0o755)
        nodes_block = "\n".join(
            f"    node {{\n        ring0_addr: {NODE_IP[n]}\n        name: {n}\n"
            f"        nodeid: {i}\n    }}"
            for i, n in enumerate(NODES, 1)
        )
        (d / "etc-corosync" / "corosync.conf").write_text(
            COROSYNC_CONF.replace("@@NODES@@", nodes_block)
        )
        cib = d / "var-lib-pacemaker" / "cib" / "cib.xml"
        cib.write_text(build_cib(self.config))
        _chown_tree(d / "var-lib-pacemaker")
        stock = self.config.mode == "stock"
        (d / "kamailio.cfg").write_text(pbx_cfg(name, stock=stock, calls=self.config.calls))
        if self.config.calls and not stock:
            (d / "keeper").mkdir()  # its kamailio.cfg is written at each start (_start_keeper)
        if self.config.mode in SIPWATCH_MODES:
            (d / "lab-policy.toml").write_text(lab_policy(self.config))
            (d / "sipwatch.toml").write_text(
                sipwatch_toml(name, d, self.config, quorum_guard=self.quorum_guard)
            )
        self.nodes[name] = Node(name=name, netns=f"{PREFIX}-{name}", dir=d)

    def start_node(self, name: str, timeout_s: float = 30.0) -> None:
        """Start the node's init, corosync, pacemakerd and (mode sipwatch) `sipwatch run`."""
        node = self.nodes[name]
        (node.dir / "ready").unlink(missing_ok=True)
        argv = [
            require_tool("ip"), "netns", "exec", node.netns,
            require_tool("unshare"), "--mount", "--propagation", "private", "--uts",
            "--pid", "--fork", "--kill-child", "--mount-proc",
            self.config.sipwatch_python, "-m", "testbed.lab_init", str(node.dir), name,
        ]  # fmt: skip
        node.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(node.dir / "init.log").open("ab"),
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        node.init_pid = _wait_child(node.proc.pid, timeout_s=10.0)
        _wait(lambda: (node.dir / "ready").exists(), 10.0, f"{name}: init not ready")
        ready = (node.dir / "ready").read_text()
        if not ready.startswith("ok"):
            raise TestbedError(f"{name}: init failed: {ready}")
        self._write_state()
        shutil.copy2(node.dir / "kamailio.cfg", node.root(f"{RUN}/kamailio.cfg"))
        if self.config.mode == "shim":  # the shim's config: one path on every node
            shutil.copy2(node.dir / "sipwatch.toml", node.root(SHIM_CONFIG))
        if self.power is not None:  # the fence agent's shared secret, root only
            target = node.root(PDU_SECRET)
            shutil.copy2(self.base / "power.secret", target)
            target.chmod(0o600)
        env = ["env", "PCMK_logfile=/var/log/pacemaker/pacemaker.log", "PCMK_logfacility=none",
               "PCMK_debug=no"]  # fmt: skip
        self.spawn(name, ["corosync", "-f"], "corosync")
        _wait(
            lambda: self.exec(name, ["corosync-cmapctl", "-g", "totem.cluster_name"],
                              check=False).returncode == 0,
            timeout_s, f"{name}: corosync did not start",
        )  # fmt: skip
        if (node.dir / "keeper").is_dir():  # before the PBX can start and ask it for calls
            self._start_keeper(name, timeout_s)
        self.spawn(name, [*env, "pacemakerd"], "pacemakerd")
        if self.config.mode in SIPWATCH_MODES:
            self.start_sipwatch(name)

    def _start_keeper(self, name: str, timeout_s: float) -> None:
        keeper = self.nodes[name].dir / "keeper"
        running = tuple(n for n in self.live_nodes() if n != name and self._keeper_up(n))
        (keeper / "kamailio.cfg").write_text(keeper_cfg(name, keeper, first=running))
        (keeper / "kamailio.pid").unlink(missing_ok=True)
        argv = ["kamailio", "-f", str(keeper / "kamailio.cfg"), "-DD", "-E", "-Y", str(keeper),
                "-P", str(keeper / "kamailio.pid"), "-m", "64"]  # fmt: skip
        self.spawn(name, argv, "keeper", log=keeper / "kamailio.log")
        _wait(
            lambda: self.exec(name, ["kamcmd", "-s", f"unix:{keeper / 'ctl'}", "core.version"],
                              check=False).returncode == 0,
            timeout_s, f"{name}: the dialog keeper did not start",
        )  # fmt: skip

    def _keeper_up(self, name: str) -> bool:
        ctl = self.nodes[name].dir / "keeper" / "ctl"
        try:
            done = self.exec(name, ["kamcmd", "-s", f"unix:{ctl}", "core.version"],
                             timeout_s=5.0, check=False)  # fmt: skip
        except TestbedError:
            return False
        return done.returncode == 0

    def power_off(self, name: str) -> None:
        """Every process of the node dies at once (SIGKILL to its PID namespace's init, by
        PID) and its cable is pulled (the veth pair is deleted, with the VIP on it)."""
        with self._power_lock:
            node = self.nodes[name]
            if node.proc is not None:
                _kill_init(node.init_pid, node.proc)
            node.init_pid = 0
            _run(["ip", "-n", f"{PREFIX}-sw", "link", "del", f"p-{name}"], check=False)
            self._write_state()

    def power_on(self, name: str) -> None:
        """Cable back in, boot the node (corosync, pacemakerd, sipwatch). It rejoins. A node
        that is on already (in mode fencing its fence, a reboot, may have booted it) is left
        alone."""
        with self._power_lock:
            if self.outlet_on(name):
                return
            if self._tearing_down:
                raise TestbedError(f"{name}: the lab is being torn down")
            ports = _run(["ip", "-n", f"{PREFIX}-sw", "-o", "link", "show"]).stdout
            if f" p-{name}@" not in ports:
                self._port(f"{PREFIX}-{name}", name, NODE_IP[name])
            else:  # the cable was left in (a partitioned node fenced before its port went)
                _run(["ip", "-n", f"{PREFIX}-sw", "link", "set", f"p-{name}", "up"])
            self.start_node(name)

    # The power controller's outlets (testbed.power.Outlets): this lab's nodes.
    def outlet_names(self) -> list[str]:
        return list(NODES)

    def outlet_on(self, name: str) -> bool:
        node = self.nodes[name]
        return bool(node.init_pid) and _is_lab_init(node.init_pid)

    def outlet_off(self, name: str) -> None:
        self.power_off(name)

    def outlet_boot(self, name: str) -> None:
        deadline = time.monotonic() + BOOT_DELAY_S
        while time.monotonic() < deadline and not self._tearing_down:
            time.sleep(0.1)
        self.power_on(name)

    def start_sipwatch(self, name: str) -> None:
        node = self.nodes[name]
        sipwatch = str(Path(self.config.sipwatch_python).parent / "sipwatch")
        self.spawn(name, [sipwatch, "run", "--config", str(node.dir / "sipwatch.toml")],
                   "sipwatch", log=node.dir / "sipwatch.log")  # fmt: skip

    def down(self) -> None:
        """Kill what this lab started (by PID), delete its namespaces and directories."""
        self._tearing_down = True  # the power controller boots nothing from here on
        if self.power is not None:
            self.power.stop()
            self.power = None
        # SIGKILL every init first (no waiting in between), so an interrupt during the waits
        # below leaves no node running.
        for node in self.nodes.values():
            if node.init_pid and _is_lab_init(node.init_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.init_pid, signal.SIGKILL)
        for node in self.nodes.values():
            if node.proc is not None:
                _kill_init(node.init_pid, node.proc)
            node.init_pid = 0
        if self.ivr is not None:
            with contextlib.suppress(TestbedError):
                self.ivr.stop()
        if self.ivr_sipp is not None:
            with contextlib.suppress(TestbedError):
                stop_process(self.ivr_sipp, 5.0)
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        shutil.rmtree(self.base, ignore_errors=True)
        STATE_FILE.unlink(missing_ok=True)


class LabFaults(LabBuilder):
    """The ways a node is broken and healed: the primitives (signals to the PBX's process
    group, the testbed kamailio.cfg's fault switches, links, loss, hung Pacemaker tools, power)
    and `inject`/`heal` by fault name, through the FAULTS table."""

    def pbx_pid(self, name: str) -> int:
        return int(self.nodes[name].root(PBX_PIDFILE).read_text().split()[0])

    def pbx_pgid(self, name: str) -> int:
        pid = self.pbx_pid(name)
        stat = self.nodes[name].root(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[2])

    def signal_pbx(self, name: str, sig: str) -> None:
        """Send SIG (KILL, STOP, CONT) to the PBX's whole process group on `name`."""
        self.exec(name, ["kill", "-s", sig, "--", f"-{self.pbx_pgid(name)}"])

    def kamcmd(self, name: str, *args: str) -> str:
        return self.exec(name, ["kamcmd", "-s", f"unix:{PBX_CTL}", *args]).stdout

    def set_fault(self, name: str, switch: str, value: int) -> None:
        """A fault switch of the testbed kamailio.cfg for OPTIONS (code, drop, delay_ms)."""
        self.kamcmd(name, "htable.seti", "fault", f"OPTIONS.{switch}", str(value))

    def fail_calls(self, name: str) -> None:
        """Every new INVITE relayed by `name`'s PBX is answered 500; OPTIONS still 200."""
        self.kamcmd(name, "htable.seti", "fault", "INVITE.code", "500")

    def clear_faults(self, name: str) -> None:
        with contextlib.suppress(TestbedError):
            self.kamcmd(name, "htable.flush", "fault")

    def link(self, name: str, state: str, *, switch_side: bool = False) -> None:
        if switch_side:
            # Mode fencing: a fenced node's port is gone until its boot plugs a new one in,
            # so the heal of a partition may find nothing to bring up.
            heal_after_fence = state == "up" and self.power is not None
            _run(["ip", "-n", f"{PREFIX}-sw", "link", "set", f"p-{name}", state],
                 check=not heal_after_fence)  # fmt: skip
        else:
            _run(["ip", "-n", f"{PREFIX}-{name}", "link", "set", "eth0", state])

    def impair(
        self,
        name: str,
        loss_pct: float,
        delay_ms: int = 20,
        jitter_ms: int = 10,
        *,
        sip_only: bool = False,
    ) -> str:
        """Loss and jitter on the node's egress (eth0): `tc netem` when the kernel has it;
        otherwise (no sch_netem, as on this project's CI kernel) loss only, with iptables
        `statistic` rules in the node's namespace. With `sip_only` (iptables only) just the SIP
        datagrams (UDP port 5060, either direction) are dropped, not corosync's ring: with
        token 1000 ms, 10 % loss on the ring itself was seen to break the membership, which
        is corosync's tuning, not what sipwatch's soak is about. Returns "netem" or
        "iptables"."""
        ns = f"{PREFIX}-{name}"
        if not sip_only:
            done = _run(["tc", "-n", ns, "qdisc", "replace", "dev", "eth0", "root", "netem",
                         "delay", f"{delay_ms}ms", f"{jitter_ms}ms", "distribution", "normal",
                         "loss", f"{loss_pct}%"], check=False)  # fmt: skip
            if done.returncode == 0:
                return "netem"
            if "unknown" not in done.stderr:
                raise TestbedError(f"tc netem on {name}: {done.stderr}")
        for rule in self._loss_rules("-A", loss_pct, sip_only):
            _run(["ip", "netns", "exec", ns, "iptables", *rule])
        self._impaired[name] = (loss_pct, sip_only)
        return "iptables"

    def unimpair(self, name: str) -> None:
        ns = f"{PREFIX}-{name}"
        _run(["tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root"], check=False)
        impaired = self._impaired.pop(name, None)
        if impaired is not None:
            for rule in self._loss_rules("-D", *impaired):
                _run(["ip", "netns", "exec", ns, "iptables", *rule], check=False)

    @staticmethod
    def _loss_rules(op: str, loss_pct: float, sip_only: bool) -> list[list[str]]:
        drop = ["-m", "statistic", "--mode", "random", "--probability",
                f"{loss_pct / 100:.4f}", "-j", "DROP"]  # fmt: skip
        if not sip_only:
            return [[op, "OUTPUT", "-o", "eth0", *drop]]
        return [
            [op, "OUTPUT", "-o", "eth0", "-p", "udp", port, "5060", *drop]
            for port in ("--dport", "--sport")
        ]

    def hang_crm_tools(self, name: str) -> None:
        """Every Pacemaker command-line tool on node `name` hangs (a `sleep` bind-mounted over
        it inside the node's mount namespace only); the cluster's daemons are untouched."""
        node = self.nodes[name]
        hang = node.dir / "hang-tool"
        hang.write_text("#!/bin/sh\nexec sleep 3600\n")
        hang.chmod(0o755)
        for tool in CRM_TOOLS:
            self.exec(name, ["mount", "--bind", str(hang), f"/usr/sbin/{tool}"])
        self._hung_tools.add(name)

    def unhang_crm_tools(self, name: str) -> None:
        for tool in CRM_TOOLS:
            self.exec(name, ["umount", f"/usr/sbin/{tool}"], check=False)
        self._hung_tools.discard(name)

    def pbx_stop_fault(self, name: str, how: str | None) -> None:
        """The PBX agent's stop on `name` fails ("fail") or hangs ("hang") until healed (None)
        or the node reboots (a file in its tmpfs /run; see testbed/ocf/labpbx)."""
        path = self.nodes[name].root(f"{RUN}/stop-fault")
        if how is None:
            with contextlib.suppress(OSError):  # a node fenced since has lost it already
                path.unlink(missing_ok=True)
        else:
            path.write_text(how + "\n")

    def kill_sipwatch(self, name: str) -> None:
        self.exec(name, ["kill", "-s", "KILL", str(self.node_pid(name, "sipwatch"))])

    def _udp_sip(self, name: str, op: str) -> None:
        """SIP over UDP dead on node `name` while TCP works: an iptables rule in the node's
        namespace drops every UDP datagram to port 5060 (the VIP's included, from anywhere)."""
        rule = ["INPUT", "-p", "udp", "--dport", "5060", "-j", "DROP"]
        _run(["ip", "netns", "exec", f"{PREFIX}-{name}", "iptables", op, *rule],
             check=op == "-A")  # fmt: skip

    def inject(self, fault: str, name: str) -> None:
        """Break node `name` in one of FAULTS' ways."""
        entry = FAULTS.get(fault)
        if entry is None:
            raise ValueError(f"unknown fault {fault!r}")
        entry.inject(self, name)

    def heal(self, fault: str, name: str) -> None:
        """Undo `fault` on `name` (the node rejoins as a healthy standby or stays active)."""
        entry = FAULTS.get(fault)
        if entry is not None:  # an unknown name heals nothing, as it always did
            entry.heal(self, name)


@dataclass(frozen=True)
class Fault:
    """One way to break a node: `inject` breaks node `name`, `heal` undoes it (the node
    rejoins as a healthy standby or stays active)."""

    inject: Callable[[LabFaults, str], None]
    heal: Callable[[LabFaults, str], None]


def _heal_nothing(lab: LabFaults, name: str) -> None:
    """crash: Pacemaker restarts or moves the PBX; nothing of the fault is left to undo."""


def _disable_ws(lab: LabFaults, name: str) -> None:
    lab.kamcmd(name, "ws.disable")


def _enable_ws(lab: LabFaults, name: str) -> None:
    with contextlib.suppress(TestbedError):
        lab.kamcmd(name, "ws.enable")


def _resume_pbx(lab: LabFaults, name: str) -> None:
    with contextlib.suppress(TestbedError, OSError, ValueError):  # a PBX gone since is fine
        lab.signal_pbx(name, "CONT")


#: Every fault, by the name the fault suite and bench/failover.py use: one entry each. The
#: entries call the lab's methods by name (not LabFaults.method), so a subclass or a test's
#: stand-in method is the one called, as in the if-chains this table replaced.
FAULTS: dict[str, Fault] = {
    "crash": Fault(lambda lab, n: lab.signal_pbx(n, "KILL"), _heal_nothing),
    "hang": Fault(lambda lab, n: lab.signal_pbx(n, "STOP"), _resume_pbx),
    # Calls fail while OPTIONS work: every new INVITE answered 500 (the calls up go on)
    "calls_fail": Fault(
        lambda lab, n: lab.fail_calls(n),
        lambda lab, n: lab.clear_faults(n),
    ),
    "503": Fault(lambda lab, n: lab.set_fault(n, "code", 503), lambda lab, n: lab.clear_faults(n)),
    "drop": Fault(lambda lab, n: lab.set_fault(n, "drop", 1), lambda lab, n: lab.clear_faults(n)),
    "slow": Fault(
        lambda lab, n: lab.set_fault(n, "delay_ms", 3000), lambda lab, n: lab.clear_faults(n)
    ),
    "power_off": Fault(lambda lab, n: lab.power_off(n), lambda lab, n: lab.power_on(n)),
    "partition": Fault(
        lambda lab, n: lab.link(n, "down", switch_side=True),
        lambda lab, n: lab.link(n, "up", switch_side=True),
    ),
    "ivr_down": Fault(  # the IVR server's cable, whichever node `name` is
        lambda lab, n: lab.link("ivr", "down", switch_side=True),
        lambda lab, n: lab.link("ivr", "up", switch_side=True),
    ),
    "sipwatch_killed": Fault(
        lambda lab, n: lab.kill_sipwatch(n), lambda lab, n: lab.start_sipwatch(n)
    ),
    "udp_dead": Fault(lambda lab, n: lab._udp_sip(n, "-A"), lambda lab, n: lab._udp_sip(n, "-D")),
    "crm_hang": Fault(lambda lab, n: lab.hang_crm_tools(n), lambda lab, n: lab.unhang_crm_tools(n)),
    # WebSocket alone: new upgrades are refused, UDP/TCP answer on
    "ws_dead": Fault(_disable_ws, _enable_ws),
    # The PBX cannot be stopped: its agent's stop fails at once, or hangs until the stop
    # timeout. Nothing else breaks: a move (or a stop) must be asked for to see it.
    "stop_fails": Fault(
        lambda lab, n: lab.pbx_stop_fault(n, "fail"), lambda lab, n: lab.pbx_stop_fault(n, None)
    ),
    "stop_hangs": Fault(
        lambda lab, n: lab.pbx_stop_fault(n, "hang"), lambda lab, n: lab.pbx_stop_fault(n, None)
    ),
}


class Lab(LabFaults):
    """The lab (see the module docstring): `up`, `down`, the observations, the faults, and one
    fault measured from injection to the client answered by another node."""

    def cleanup_resources(self) -> None:
        """Fail counts and operation history of g_pbx forgotten (after a test's failover)."""
        self.exec(self.tool_nodes()[0], ["crm_resource", "--cleanup", "--resource", "g_pbx"],
                  check=False)  # fmt: skip

    def measure_failover(self, fault: str, timeout_s: float = 90.0) -> Failover:
        """Inject `fault` on the active node; time until the client's OPTIONS via the VIP are
        answered by another node; VIP holders sampled throughout; the old node healed and the
        placement settled before returning."""
        old = self.active()
        with self.watch_vip() as watch:
            t0 = time.monotonic()
            self.inject(fault, old)
            new, _ = self.wait_served_by(not_by=old, timeout_s=timeout_s)
            seconds = time.monotonic() - t0
            self.heal(fault, old)
            settled = self.wait_placement(timeout_s=60.0)
        return Failover(
            fault,
            old,
            new,
            seconds,
            settled,
            watch.max_holders,
            watch.sequence(),
            watch.max_lan_holders,
            watch.overlap_s,
        )

    def hold_calls(self, n: int = 10, **kw: Any) -> CallHolder:
        """N calls from the client namespace through the VIP to the IVR (LabConfig.calls), not
        yet placed: `with lab.hold_calls(10) as calls:` (testbed.calls)."""
        if not self.config.calls:
            raise TestbedError("the lab was brought up without calls (LabConfig.calls)")
        return CallHolder(target=f"sip:ivr@{IVR_IP}:{IVR_CALL_PORT}", proxy=(VIP, 5060),
                          local_ip=CLIENT_IP, n=n, netns=Netns(f"{PREFIX}-cl"), **kw)  # fmt: skip

    def dialogs(self, name: str, *, keeper: bool = False) -> set[str]:
        """Call-IDs of the confirmed dialogs (state 4) that node `name`'s PBX, or its keeper,
        lists (`kamcmd dlg.list`); empty when it is not running, hung, or has no dialogs."""
        ctl = str(self.nodes[name].dir / "keeper" / "ctl") if keeper else PBX_CTL
        try:
            done = self.exec(name, ["kamcmd", "-s", f"unix:{ctl}", "dlg.list"], timeout_s=5.0,
                             check=False)  # fmt: skip
        except TestbedError:  # powered off, or the PBX is stopped and kamcmd waited
            return set()
        if done.returncode != 0:
            return set()
        found = re.findall(r"call-id:\s*(\S+).*?state:\s*(\d+)", done.stdout, re.S)
        return {call_id for call_id, state in found if state == "4"}

    def measure_calls(
        self, fault: str, n: int = 10, *, timeout_s: float = 120.0, **holder_kw: Any
    ) -> CallsFailover:
        """N established calls (media, an UPDATE every 0.15 s) through the VIP; `fault` on the
        active node; until the client's OPTIONS are answered by another node and every call's
        refresh has been answered through it (bounded); whether the new node's PBX lists the
        calls; then the calls are ended (BYE) and the old node healed."""
        old = self.active()
        holder = self.hold_calls(n, **holder_kw)
        holder.start()
        known: set[str] = set()
        ids = {r.call_id for r in holder.reports}
        try:
            time.sleep(1.0)  # a steady second of refreshes and media first
            with self.watch_vip() as watch:
                t0 = time.monotonic()
                self.inject(fault, old)
                new, _ = self.wait_served_by(not_by=old, timeout_s=timeout_s)
                served = time.monotonic()
                deadline = served + 10.0
                while time.monotonic() < deadline:
                    if all(r.answered_after(served) for r in holder.reports):
                        break
                    time.sleep(0.1)
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    known = self.dialogs(new) & ids
                    if known == ids:
                        break
                    time.sleep(0.2)
        finally:
            reports = holder.stop()
        self.heal(fault, old)
        self.wait_placement(timeout_s=60.0)
        return CallsFailover(fault, old, new, served - t0, t0, served, reports, known,
                             watch.max_holders)  # fmt: skip

    def measure_tcp_phone(self, fault: str, *, timeout_s: float = 120.0) -> dict[str, object]:
        """A phone on TCP (testbed.tcp_phone: a kept connection, REGISTER, OPTIONS every
        0.15 s) through the VIP; `fault` on the active node; until another node serves and the
        phone has registered again on a new connection (bounded); what it cost the phone."""
        old = self.active()
        phone = TcpPhone(proxy=(VIP, 5060), local_ip=CLIENT_IP, user="monitor",
                         password="lab-secret", netns=Netns(f"{PREFIX}-cl"))  # fmt: skip
        phone.start()
        try:
            time.sleep(1.0)
            t0 = time.monotonic()
            self.inject(fault, old)
            new, _ = self.wait_served_by(not_by=old, timeout_s=timeout_s)
            served = time.monotonic() - t0
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline and phone.after(t0)["gap_s"] is None:
                time.sleep(0.1)
        finally:
            phone.stop()
        self.heal(fault, old)
        self.wait_placement(timeout_s=60.0)
        return {"fault": fault, "old": old, "new": new, "failover_s": round(served, 3),
                **phone.after(t0)}  # fmt: skip

    def reset(self, timeout_s: float = 60.0) -> str:
        """Back to a steady state: fail counts cleared, g_pbx settled and answering, every
        sipwatch green. Returns the active node."""
        self.cleanup_resources()
        node = self.wait_placement(timeout_s=timeout_s)
        self.wait_served_by(node, timeout_s=timeout_s)
        if self.config.mode in HEALTH_MODES:
            self.wait_health_green(timeout_s=timeout_s)
        if self.config.mode in SIPWATCH_MODES:
            self.wait_judged(node, timeout_s=timeout_s)
        return node

    def set_quorum_guard(self, on: bool, timeout_s: float = 60.0) -> None:
        """sipwatch's quorum guard (`release_vip_without_quorum`) on or off on every node:
        each config rewritten (a node booted later reads it too), each live node's `sipwatch
        run` restarted, every sipwatch green again."""
        if on == self.quorum_guard:
            return
        self.quorum_guard = on
        for name, node in self.nodes.items():
            text = sipwatch_toml(name, node.dir, self.config, quorum_guard=on)
            (node.dir / "sipwatch.toml").write_text(text)
        for name in self.live_nodes():
            pid = self.node_pid(name, "sipwatch")
            with contextlib.suppress(TestbedError):
                self.kill_sipwatch(name)
            gone = self.nodes[name].root(f"/proc/{pid}/cmdline")
            _wait(lambda g=gone: not g.exists(), 10.0, f"{name}: sipwatch did not exit")
            self.start_sipwatch(name)
        self.wait_health_green(timeout_s=timeout_s)

    def fence_history(self, via: str | None = None) -> list[dict[str, str]]:
        """Pacemaker's fencing history (`stonith_admin --history '*'`), newest first: each
        event's target, action, status ("success", "failed", "pending"), completed time."""
        nodes = [via] if via else self.tool_nodes()
        for name in nodes:
            done = self.exec(name, ["stonith_admin", "--history", "*", "--output-as=xml"],
                             check=False)  # fmt: skip
            if done.returncode == 0:
                root = ET.fromstring(done.stdout)
                return [dict(e.attrib) for e in root.iter("fence_event")]
        raise TestbedError("stonith_admin --history failed on every live node")

    def wait_judged(self, name: str, timeout_s: float = 30.0) -> None:
        """Until the active node's sipwatch is green and out of its startup and takeover
        graces: a fault injected inside a grace is judged differently on purpose (failures are
        yellow there), so a test that means "the steady active node breaks" waits for this."""
        box: dict[str, str] = {}

        def judged() -> bool:
            status = self.sipwatch_status(name)
            box["last"] = f"{status.get('verdict')}, grace {status.get('grace')}"
            return status.get("verdict") == "green" and status.get("grace") is None

        try:
            _wait(judged, timeout_s, f"sipwatch on {name} did not settle out of its graces")
        except TestbedError as exc:
            raise TestbedError(f"{exc}; last look: {box.get('last', '-')}") from None

    def sipwatch_status(self, name: str) -> dict[str, Any]:
        """The node's `sipwatch run` /status ({} when it does not answer)."""
        code = (
            "import json,urllib.request;"
            f"print(urllib.request.urlopen('http://127.0.0.1:{SIPWATCH_HTTP_PORT}/status',"
            "timeout=2).read().decode())"
        )
        done = self.exec(name, [sys.executable, "-c", code], check=False)
        if done.returncode != 0:
            return {}
        try:
            body = json.loads(done.stdout)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class Failover:
    fault: str
    old: str  # the node the fault was injected on
    new: str  # the node that answered the client's OPTIONS afterwards
    seconds: float  # injection -> answered by `new`
    settled_on: str  # where g_pbx settled
    max_holders: int  # most nodes holding the VIP at one sample
    holders: list[tuple[str, ...]]  # VIP holder sets seen, in order ("n1/cut": no carrier)
    max_lan_holders: int = 0  # most holders at one sample that the LAN could reach
    overlap_s: float = 0.0  # how long two nodes held the VIP (cut off or not)


class VipWatch:
    """Samples who holds the VIP, and whether each holder is cut off from the LAN (no
    carrier on eth0): `max_holders` is the worst overlap seen by `ip addr` alone,
    `max_lan_holders` the worst among holders the LAN could reach (without fencing, a
    partitioned node keeps the VIP until its no-quorum stop; cut off, it cannot answer)."""

    def __init__(self, lab: LabObserver, period_s: float) -> None:
        self.lab = lab
        self.period_s = period_s
        self.samples: list[tuple[float, tuple[str, ...]]] = []  # "n1" or "n1/cut"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vip-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            holders = tuple(
                f"{n}/cut" if self.lab.cut_off(n) else n for n in self.lab.vip_holders()
            )
            self.samples.append((now, holders))
            self._stop.wait(self.period_s)

    @property
    def max_holders(self) -> int:
        return max((len(h) for _, h in self.samples), default=0)

    @property
    def max_lan_holders(self) -> int:
        return max((sum("/" not in n for n in h) for _, h in self.samples), default=0)

    @property
    def overlap_s(self) -> float:
        """Time between the first and last sample with two holders (0 when never)."""
        two = [t for t, h in self.samples if len(h) > 1]
        return two[-1] - two[0] + self.period_s if two else 0.0

    def sequence(self) -> list[tuple[str, ...]]:
        """Distinct holder sets in order (consecutive duplicates folded)."""
        out: list[tuple[str, ...]] = []
        for _, h in self.samples:
            if not out or out[-1] != h:
                out.append(h)
        return out


# -- pieces of the lab's configuration ---------------------------------------------------------
def pbx_cfg(name: str, *, stock: bool, calls: bool = False) -> str:
    """The testbed kamailio.cfg for node `name` on the VIP: fault switches, relaying to the IVR
    server, "Server: pbx-NAME" (the client tells who answered). The stock agent passes
    `-l udp:VIP:5060` itself, so its config has no listen lines. `calls`: record-route on the
    VIP; and but for the stock agent (its listen parameters leave no node address to speak
    DMQ from) the dialogs replicated over DMQ from NODE_IP:DMQ_PORT to the keepers."""
    template = resources.files("testbed").joinpath("kamailio.cfg").read_text()
    # SIP over WebSocket (WS, RFC 7118) on the VIP beside UDP/TCP 5060, for the WebRTC
    # clients of the PortSIP design; not for the stock agent, which brings its own listen.
    ws = (
        ""
        if stock
        else f'\n#!define WITH_WS\n#!substdef "!WS_PORT!{WS_PORT}!"\n#!substdef "!WSS_PORT!0!"'
    )
    dialog = ""
    if calls:
        dialog = "\n#!define WITH_RECORD_ROUTE"
        if not stock:
            i = list(NODES).index(name)
            dmq = Dmq(
                server=f"{NODE_IP[name]}:{DMQ_PORT}",
                # its own node's keeper first (the initial node list comes from the first;
                # it runs before the PBX can start), then the other keepers
                peers=tuple(
                    f"{NODE_IP[n]}:{KEEPER_PORT}" for n in [name, *(o for o in NODES if o != name)]
                ),
                h_id_start=i,
                h_id_step=DLG_H_STEP,
            )
            dialog += "\n" + "\n".join(
                [*dmq.defines(), "#!define WITH_SEND_SOCKET",
                 f'#!substdef "!SEND_SOCKET!udp:{VIP}:5060!"']
            )  # fmt: skip
    text = _render(
        template,
        {
            "DEFINES": "#!define WITH_FORWARD" + ws + dialog,
            "SERVER_NAME": f"pbx-{name}",
            "SERVER_SIGNATURE": "yes",
            "LISTEN_HOST": VIP,
            "UDP_PORT": "5060",
            "TCP_PORT": "5060",
            "TLS_PORT": "0",
            "CTL_SOCKET": PBX_CTL,
            "TLS_CFG": "",
            "USERS": '\t$sht(users=>monitor) = "lab-secret";',
            "REALM": "swlab",
            "QOP_FLAG": "1",
        },
    )
    if stock:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("listen="))
    elif calls:
        own = f"listen=udp:{VIP}:5060"
        text = text.replace(own, f"{own}\nlisten=udp:{NODE_IP[name]}:{DMQ_PORT}", 1)
    return text


def keeper_cfg(name: str, keeper_dir: Path, first: tuple[str, ...] = ()) -> str:
    """The dialog keeper of node `name`: a Kamailio on NODE_IP:KEEPER_PORT that is only a DMQ
    node holding the replicated dialogs (`kamcmd dlg.list` on its ctl socket), for the PBX
    that starts on this node to ask. It notifies every keeper when it starts, `first` (nodes
    whose keepers run now) before the rest: Kamailio's DMQ takes its initial node list from
    the first notification address only, and only at start; the others are told about it
    but tell it nothing back until DMQ's next ping, 60 s later. With a fixed n1, n2 as the
    seeds, a keeper rebooted while n1 was the node down got no list, the bus stayed split,
    and n3's keeper missed the calls placed meanwhile (tests/lab/test_calls.py, after two
    power-offs)."""
    template = resources.files("testbed").joinpath("kamailio.cfg").read_text()
    i = list(NODES).index(name)
    server = f"{NODE_IP[name]}:{KEEPER_PORT}"
    others = [n for n in NODES if n not in first and n != name]
    # the first keeper of the cluster is its own seed; later ones ask a running keeper
    order = [*first, *others, name] if first else [name, *others]
    dmq = Dmq(
        server=server,
        peers=tuple(f"{NODE_IP[n]}:{KEEPER_PORT}" for n in order),
        h_id_start=len(NODES) + i,
        h_id_step=DLG_H_STEP,
    )
    return _render(
        template,
        {
            "DEFINES": "\n".join(
                ["#!define WITH_FORWARD", "#!define WITH_RECORD_ROUTE", *dmq.defines()]
            ),
            "SERVER_NAME": f"keeper-{name}",
            "SERVER_SIGNATURE": "yes",
            "LISTEN_HOST": NODE_IP[name],
            "UDP_PORT": str(KEEPER_PORT),
            "TCP_PORT": str(KEEPER_PORT),
            "TLS_PORT": "0",
            "CTL_SOCKET": str(keeper_dir / "ctl"),
            "TLS_CFG": "",
            "USERS": "\treturn;",
            "REALM": "swlab",
            "QOP_FLAG": "1",
        },
    )


def lab_policy(config: LabConfig | None = None) -> str:
    text = (REPO_ROOT / "policies" / "fast.toml").read_text()
    overrides = dict(LAB_POLICY_OVERRIDES)
    if config is not None and config.confirm_interval_s is not None:
        overrides["confirm_interval_s"] = str(config.confirm_interval_s)
    for key, value in overrides.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
    # The WebSocket probe is major, as the shipped policies have pbx-wss: a WebSocket-only
    # failure does not move the PBX (fault "ws_dead" asserts it).
    return text + '\n[probes.pbx-ws]\nrole = "major"\n'


def sipwatch_toml(name: str, node_dir: Path, config: LabConfig, *, quorum_guard: bool) -> str:
    iv = config.probe_interval_s
    return f"""\
# sipwatch on lab node {name} (written by testbed.lab)
policy = "{node_dir / "lab-policy.toml"}"
log_format = "text"

[sip]
t1_s = 0.25

[daemon]
http_host = "127.0.0.1"
http_port = {SIPWATCH_HTTP_PORT}
# Re-assert the verdict sooner than the 30 s default, so the test of an attribute lost
# behind sipwatch's back (tests/lab) waits seconds, not half a minute.
reassert_s = {REASSERT_S}

{_cluster_section(name, node_dir, config, quorum_guard)}

[[probes]]
name = "pbx-udp"
kind = "sip_options"
uri = "sip:{VIP}:5060;transport=udp"
timeout_s = {iv * 0.8}
interval_s = {iv}

[[probes]]
name = "pbx-ws"
kind = "sip_options"
uri = "sip:{VIP}:{WS_PORT};transport=ws"
timeout_s = {iv * 0.8}
interval_s = {iv}

[[probes]]
name = "pbx-process"
kind = "pbx_process"
pidfile = "{PBX_PIDFILE}"
always_running = false
timeout_s = {iv * 0.8}
interval_s = {iv}

[[probes]]
name = "vip"
kind = "vip"
address = "{VIP}"
interface = "eth0"
timeout_s = {iv * 0.8}
interval_s = {iv}

[[probes]]
name = "ivr-via-vip"
kind = "via_vip_sip"
uri = "sip:{IVR_IP}:5060"
outbound_proxy = "sip:{VIP}:5060"
timeout_s = 1.5
interval_s = 2.0
""" + (_call_probe() if config.calls else "")


def _call_probe() -> str:
    """LabConfig.calls: a call to the IVR through the VIP (kind sip_call: INVITE, ACK, RTP
    echoed back, BYE), the shipped PortSIP probe set's "ivr-call"."""
    return f"""
[[probes]]
name = "ivr-call"
kind = "sip_call"
uri = "sip:ivr@{IVR_IP}:{IVR_CALL_PORT}"
outbound_proxy = "sip:{VIP}:5060"
media_s = 0.3
timeout_s = 2.0
interval_s = 2.0
"""


def _cluster_section(name: str, node_dir: Path, config: LabConfig, quorum_guard: bool) -> str:
    guard = "true" if quorum_guard else "false"
    if config.mode == "shim":  # the OCF shim is the path to Pacemaker: the daemon probes
        return f"""\
[cluster]
agent = "none"
dry_run = false
node = "{name}"
resource = "g_pbx"
audit_log = "{node_dir / "audit.jsonl"}"
release_vip_without_quorum = {guard}
"""
    return f"""\
[cluster]
agent = "health_attribute"
dry_run = false
node = "{name}"
resource = "g_pbx"
cooldown_s = 0.0
budget = 100
budget_window_s = 60.0
freeze_file = "{node_dir / "freeze"}"
audit_log = "{node_dir / "audit.jsonl"}"
tool_timeout_s = 5.0
tool_total_s = 10.0
release_vip_without_quorum = {guard}
"""


def _nv(parent: ET.Element, tag: str, pid: str, pairs: dict[str, str]) -> ET.Element:
    el = ET.SubElement(parent, tag, id=pid)
    for k, v in pairs.items():
        ET.SubElement(el, "nvpair", id=f"{pid}-{k}", name=k, value=v)
    return el


def _op(ops: ET.Element, rsc: str, name: str, interval: str, timeout: str) -> None:
    ET.SubElement(ops, "op", id=f"{rsc}-{name}-{interval}", name=name, interval=interval,
                  timeout=timeout)  # fmt: skip


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def build_cib(config: LabConfig) -> str:
    """The pre-seeded CIB: nodes, properties, g_pbx (p_vip + p_pbx) preferring n1."""
    done = _run([require_tool("cibadmin"), "--empty"])
    root = ET.fromstring(done.stdout)
    conf = root.find("configuration")
    assert conf is not None
    crm = conf.find("crm_config")
    nodes = conf.find("nodes")
    rscs = conf.find("resources")
    cons = conf.find("constraints")
    assert crm is not None and nodes is not None and rscs is not None and cons is not None
    fencing = config.mode == "fencing"
    # no-quorum-policy "stop" in both: with fencing, the majority fences the cut-off node
    # anyway, and stopping what it holds at once keeps the VIP off the LAN until then.
    # "suicide" would need the minority to fence itself, through a controller it cannot
    # reach; "freeze"/"ignore" would leave the VIP answering on it until the fence lands.
    _nv(crm, "cluster_property_set", "cib-bootstrap-options", {
        "stonith-enabled": "true" if fencing else "false",
        "no-quorum-policy": "stop",
        "dc-deadtime": "5s",
        "node-health-strategy": "migrate-on-red",
        "cluster-recheck-interval": "1min",
        **({"stonith-timeout": f"{STONITH_TIMEOUT_S}s"} if fencing else {}),
    })  # fmt: skip
    for i, n in enumerate(NODES, 1):
        ET.SubElement(nodes, "node", id=str(i), uname=n)
    group = ET.SubElement(rscs, "group", id="g_pbx")
    _nv(group, "meta_attributes", "g_pbx-meta",
        {"resource-stickiness": "100", "migration-threshold": "1"})  # fmt: skip
    vip = ET.SubElement(group, "primitive", id="p_vip", type="IPaddr2")
    vip.set("class", "ocf")
    vip.set("provider", "heartbeat")
    _nv(vip, "instance_attributes", "p_vip-ia", {"ip": VIP, "cidr_netmask": "24", "nic": "eth0"})
    ops = ET.SubElement(vip, "operations")
    _op(ops, "p_vip", "monitor", "5s", "10s")
    _op(ops, "p_vip", "start", "0", "10s")
    _op(ops, "p_vip", "stop", "0", "10s")
    pbx = ET.SubElement(group, "primitive", id="p_pbx")
    pbx.set("class", "ocf")
    mon = _ms(config.monitor_interval_s)
    if config.mode == "stock":
        pbx.set("provider", "heartbeat")
        pbx.set("type", "kamailio")
        _nv(pbx, "instance_attributes", "p_pbx-ia", {
            "conffile": f"{RUN}/kamailio.cfg", "pidfile": PBX_PIDFILE,
            "listen_address": VIP, "port": "5060", "proto": "udp",
            "monitoring_ip": VIP, "kamctlrc": "",
        })  # fmt: skip
        ops = ET.SubElement(pbx, "operations")
        _op(ops, "p_pbx", "monitor", mon, "30s")
        _op(ops, "p_pbx", "start", "0", "60s")
        _op(ops, "p_pbx", "stop", "0", _ms(config.stop_timeout_s))
    else:
        pbx.set("provider", "sipwatch")
        pbx.set("type", "labpbx")
        _nv(pbx, "instance_attributes", "p_pbx-ia", {
            "config": f"{RUN}/kamailio.cfg", "pidfile": PBX_PIDFILE, "address": VIP,
            "port": "5060", "stop_grace": "2",
        })  # fmt: skip
        ops = ET.SubElement(pbx, "operations")
        _op(ops, "p_pbx", "monitor", mon, "5s")
        _op(ops, "p_pbx", "start", "0", "20s")
        _op(ops, "p_pbx", "stop", "0", _ms(config.stop_timeout_s))
    if config.mode == "shim":
        sw = ET.SubElement(group, "primitive", id="p_sw", type="sipwatch")
        sw.set("class", "ocf")
        sw.set("provider", "sipwatch")
        _nv(sw, "instance_attributes", "p_sw-ia", {
            "mode": "service", "config": SHIM_CONFIG, "pidfile": PBX_PIDFILE,
            "sipwatch": str(Path(config.sipwatch_python).parent / "sipwatch"),
        })  # fmt: skip
        ops = ET.SubElement(sw, "operations")
        mon_op = ET.SubElement(ops, "op", id="p_sw-monitor", name="monitor", interval=mon,
                               timeout="10s")  # fmt: skip
        _nv(mon_op, "instance_attributes", "p_sw-monitor-ia", {"OCF_CHECK_LEVEL": "10"})
        _op(ops, "p_sw", "start", "0", "20s")
        _op(ops, "p_sw", "stop", "0", "10s")
    ET.SubElement(cons, "rsc_location", id="l_g_pbx_n1", rsc="g_pbx", node="n1", score="50")
    if fencing:  # one device for the three nodes: the lab's power controller
        st = ET.SubElement(rscs, "primitive", id="st_pdu", type="fence_swlab")
        st.set("class", "stonith")
        _nv(st, "instance_attributes", "st_pdu-ia", {
            "ip": PDU_IP, "ipport": str(PDU_PORT), "secret_file": PDU_SECRET,
            "power_timeout": str(FENCE_POWER_TIMEOUT_S),
            "pcmk_host_list": " ".join(NODES), "pcmk_host_check": "static-list",
        })  # fmt: skip
        ops = ET.SubElement(st, "operations")
        _op(ops, "st_pdu", "monitor", "10s", "15s")
    root.set("have-quorum", "1")
    return ET.tostring(root, encoding="unicode")


def _started_on(root: ET.Element, rsc: str) -> list[str]:
    """The nodes crm_mon's XML `root` shows resource `rsc` started on."""
    return sorted(
        n.get("name", "")
        for r in root.iter("resource")
        if r.get("id") == rsc and r.get("role") == "Started"
        for n in r.iter("node")
    )


# -- client side (runs in a thread inside the client namespace) ----------------------------------
def _options_once(timeout_s: float) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((CLIENT_IP, 0))
        local = sock.getsockname()[:2]
        req = rawsip.build_request(method="OPTIONS", ruri=f"sip:monitor@{VIP}:5060",
                                   transport="udp", local=local)  # fmt: skip
        sock.sendto(req, (VIP, 5060))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except (TimeoutError, OSError):
                return None
            code = rawsip.status_code(data)
            if code is None or code < 200:
                continue
            if code != 200:
                return None
            server = rawsip.header(data, "Server") or ""
            return server.removeprefix("pbx-") or "?"
    return None


def _poll_served(
    node: str | None, not_by: str | None, timeout_s: float
) -> tuple[str, float] | None:
    start = time.monotonic()
    deadline = start + timeout_s
    while time.monotonic() < deadline:
        who = _options_once(0.2)
        if who is not None and (node is None or who == node) and who != not_by:
            return who, time.monotonic() - start
        time.sleep(0.05)
    return None


# -- helpers ------------------------------------------------------------------------------------
def _run(
    argv: list[str], *, timeout_s: float = CMD_TIMEOUT_S, check: bool = True
) -> subprocess.CompletedProcess[str]:
    if not os.path.isabs(argv[0]):
        argv = [require_tool(argv[0]), *argv[1:]]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{' '.join(argv)} timed out after {timeout_s} s") from exc
    if check and done.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed (rc={done.returncode}): {done.stderr}")
    return done


def _wait(pred: Any, timeout_s: float, what: str, period_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise TestbedError(f"{what} within {timeout_s} s")
        time.sleep(period_s)


def _chown_tree(path: Path) -> None:
    import grp
    import pwd

    uid, gid = pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, gid)


def _wait_child(pid: int, timeout_s: float) -> int:
    """The one child of `pid` (unshare's forked child: the node's init)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            kids = path.read_text().split()
            if kids:
                return int(kids[0])
        time.sleep(0.02)
    raise TestbedError(f"process {pid} started no child within {timeout_s} s")


def _is_lab_init(pid: int) -> bool:
    try:
        # also matches "sipwatch.testbed.lab_init": a lab brought up before the rig moved
        return b"testbed.lab_init" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill_init(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a node's init (only if it is one: checked by command line): the kernel then
    kills every process of its PID namespace. Waits (bounded) for `unshare` to exit."""
    if pid and _is_lab_init(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


# -- one call up, one call down -----------------------------------------------------------------
@contextlib.contextmanager
def lab_up(config: LabConfig | None = None) -> Iterator[Lab]:
    """`with lab_up() as lab:` — the lab, torn down however the block ends."""
    lab = Lab(config or LabConfig())
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def down_from_state() -> list[str]:
    """Tear down a lab another process brought up (`lab up`), from its state file: only the
    PIDs (checked to be lab inits) and namespaces it lists. Returns what was removed."""
    if not STATE_FILE.exists():
        return []
    state = json.loads(STATE_FILE.read_text())
    removed = []
    for name, pid in state.get("inits", {}).items():
        if pid and _is_lab_init(pid):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"node {name} (init {pid})")
    ivr = state.get("ivr_pid", 0)
    with contextlib.suppress(OSError):
        if ivr and b"kamailio" in Path(f"/proc/{ivr}/cmdline").read_bytes():
            os.killpg(ivr, signal.SIGKILL)  # its own process group (start_new_session)
            removed.append(f"ivr kamailio {ivr}")
    sipp = state.get("ivr_sipp_pid", 0)
    with contextlib.suppress(OSError):
        if sipp and b"sipp" in Path(f"/proc/{sipp}/cmdline").read_bytes():
            os.killpg(sipp, signal.SIGKILL)  # `ip netns exec` execs sipp: same process
            removed.append(f"ivr sipp {sipp}")
    time.sleep(0.5)
    for ns in reversed(state.get("namespaces", [])):
        _run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    shutil.rmtree(state.get("base", str(BASE_DIR)), ignore_errors=True)
    STATE_FILE.unlink(missing_ok=True)
    return removed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.lab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--mode", choices=("sipwatch", "shim", "stock", "fencing"),
                   default="sipwatch")  # fmt: skip
    p.add_argument("--monitor-interval", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.action == "down":
        for what in down_from_state():
            print("removed", what)
        return 0
    if args.action == "status":
        if not STATE_FILE.exists():
            print("no lab is up")
            return 3
        state = json.loads(STATE_FILE.read_text())
        print(json.dumps(state, indent=1))
        for name in NODES:
            out = _run(["ip", "-n", f"{PREFIX}-{name}", "-o", "-4", "addr", "show", "eth0"],
                       check=False).stdout  # fmt: skip
            print(name, "holds the VIP" if f" {VIP}/" in out else "-")
        return 0
    cfg = LabConfig(mode=args.mode, monitor_interval_s=args.monitor_interval)
    lab = Lab(cfg)
    lab.up()
    if cfg.mode == "fencing":  # the power controller lives in this process: stay with it
        print(f"lab up in {lab.up_s:.1f} s; g_pbx on {lab.active()}; power controller on "
              f"{PDU_IP}:{PDU_PORT}; Ctrl-C (or SIGTERM) tears the lab down")  # fmt: skip
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            lab.down()
        return 0
    # The lab outlives this process: its inits were started in their own sessions.
    print(f"lab up in {lab.up_s:.1f} s; g_pbx on {lab.active()}; `lab down` removes it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
