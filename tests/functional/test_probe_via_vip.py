"""`via_vip_sip` and `from_vip` in network namespaces: a Kamailio "PBX" on the VIP that
relays to a second Kamailio as the "IVR server"; each leg is broken in turn.

    ns node (this PBX node)                     ns ivr
    lan0 10.99.0.1/24 + VIP 10.99.0.10/32 ----- lan0 10.99.0.20/24
    Kamailio "pbx" on VIP:5060 (forwarding)     Kamailio "ivr-server" on :5060

sipwatch runs inside ns node (testbed.netns.run_async_in), as it would on the VIP holder.
Every address lives inside namespaces this module creates and removes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.from_vip import FromVipSpec
from sipwatch.probes.sip_options import SipOptionsSpec
from sipwatch.probes.via_vip import ViaVipSipSpec
from sipwatch.sip.transaction import Timers
from testbed import KamailioPeer, MissingToolError, start_kamailio
from testbed.netns import Netns, cleanup, require_root, run_async_in, veth

pytestmark = pytest.mark.peers

VIP, NODE_IP, IVR_IP = "10.99.0.10", "10.99.0.1", "10.99.0.20"
IVR_URI = f"sip:ivr@{IVR_IP}:5060"
VIP_URI = f"sip:{VIP}:5060"
CTX = ProbeContext(timers=Timers(t1_s=0.25))


@dataclass
class Lab:
    node: Netns
    ivr_ns: Netns
    pbx: KamailioPeer
    ivr: KamailioPeer


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    why = require_root()
    if why:
        pytest.skip(f"!!! NOT TESTED: VIP legs need network namespaces: {why} !!!")
    made: list[Netns] = []
    peers: list[KamailioPeer] = []
    base = tmp_path_factory.mktemp("vip")
    try:
        node, ivr_ns = Netns.create("node"), None
        made.append(node)
        ivr_ns = Netns.create("ivr")
        made.append(ivr_ns)
        veth(node, "lan0", ivr_ns, "lan0")
        node.add_address(f"{NODE_IP}/24", "lan0")
        node.add_address(f"{VIP}/32", "lan0")
        ivr_ns.add_address(f"{IVR_IP}/24", "lan0")
        try:
            pbx = start_kamailio(
                base / "pbx", host=VIP, tls=False, netns=node, forward=True, server_name="pbx"
            )
            peers.append(pbx)
            ivr = start_kamailio(
                base / "ivr", host=IVR_IP, tls=False, netns=ivr_ns, server_name="ivr-server"
            )
            peers.append(ivr)
        except MissingToolError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield Lab(node, ivr_ns, pbx, ivr)
    finally:
        for peer in peers:
            peer.stop()
        cleanup(made)


@pytest.fixture
def healthy(lab: Lab) -> Iterator[Lab]:
    """The lab, put back the way it was after each test (faults, frozen groups, the VIP)."""
    yield lab
    for peer in (lab.pbx, lab.ivr):
        os.killpg(peer.pid, signal.SIGCONT)
        peer.clear_faults()
    addrs = lab.node.ip("-o", "addr", "show", "dev", "lan0")
    if f"{VIP}/32" not in addrs:
        lab.node.add_address(f"{VIP}/32", "lan0")


def in_node(lab: Lab, spec: object) -> ProbeResult:
    return run_async_in(lab.node, lambda: run_probe(spec, CTX), timeout_s=30)


def via(**kw: object) -> ViaVipSipSpec:
    args: dict[str, object] = {
        "uri": IVR_URI,
        "outbound_proxy": VIP_URI,
        "timeout_s": 2.0,
        "server_match": "^ivr-server$",
    }
    args.update(kw)
    return ViaVipSipSpec(**args)  # type: ignore[arg-type]


def from_vip(**kw: object) -> FromVipSpec:
    args: dict[str, object] = {"uri": IVR_URI, "source_address": VIP, "timeout_s": 1.0}
    args.update(kw)
    return FromVipSpec(**args)  # type: ignore[arg-type]


def test_all_legs_ok(healthy: Lab) -> None:
    r = in_node(healthy, via())
    assert r.outcome is Outcome.OK, r
    assert (r.status_code, r.extra["leg"], r.scope) == (200, None, "node")
    assert r.extra["server"] == "ivr-server"  # the IVR answered, relayed by the PBX
    assert r.extra["pbx_status"] == 200 and r.resolved == f"udp:{VIP}:5060"

    r = in_node(healthy, from_vip())
    assert r.outcome is Outcome.OK, r
    assert (r.extra["leg"], r.extra["vip_held"], r.extra["vip_interface"]) == (None, True, "lan0")
    assert r.extra["source"].startswith(f"{VIP}:")  # the OPTIONS left from the VIP

    r = in_node(healthy, from_vip(method="tcp"))
    assert r.outcome is Outcome.OK, r
    assert r.detail.startswith(f"TCP connect from {VIP}:")


def test_the_vip_answers_sip(healthy: Lab) -> None:
    # "The VIP answers SIP" is a plain sip_options probe on the VIP (docs/probes.md).
    r = in_node(healthy, SipOptionsSpec(uri=VIP_URI, timeout_s=1.0))
    assert (r.outcome, r.status_code) == (Outcome.OK, 200), r
    healthy.node.del_address(f"{VIP}/32", "lan0")
    r = in_node(healthy, SipOptionsSpec(uri=VIP_URI, timeout_s=1.0))
    assert r.outcome in (Outcome.TIMEOUT, Outcome.UNREACHABLE), r


def test_tcp_transport_through_the_vip(healthy: Lab) -> None:
    r = in_node(healthy, via(transport="tcp"))
    assert r.outcome is Outcome.OK, r
    assert (r.transport, r.extra["server"]) == ("tcp", "ivr-server")


def test_server_silent_is_a_remote_finding(healthy: Lab) -> None:
    healthy.ivr.set_fault("OPTIONS", drop=True)
    r = in_node(healthy, via())
    assert r.outcome is Outcome.TIMEOUT, r
    assert (r.status_code, r.extra["leg"], r.scope) == (408, "pbx_to_server", "remote")
    assert r.extra["pbx_status"] == 200
    assert "the PBX answers but not the server" in r.detail

    r = in_node(healthy, from_vip())
    assert r.outcome is Outcome.TIMEOUT, r
    assert (r.extra["leg"], r.scope) == ("vip_to_server", "remote")
    assert r.retransmissions >= 1


def test_server_port_closed_is_refused_from_the_vip(healthy: Lab) -> None:
    closed = f"sip:ivr@{IVR_IP}:5999"
    r = in_node(healthy, from_vip(uri=closed))
    assert r.outcome is Outcome.REFUSED, r
    assert (r.extra["leg"], r.scope) == ("vip_to_server", "remote")
    r = in_node(healthy, from_vip(uri=closed, method="tcp"))
    assert (r.outcome, r.extra["leg"]) == (Outcome.REFUSED, "vip_to_server"), r
    # Through the PBX, a closed port only means the relay never gets an answer: 408.
    r = in_node(healthy, via(uri=closed))
    assert (r.outcome, r.status_code, r.extra["leg"]) == (Outcome.TIMEOUT, 408, "pbx_to_server")


def test_answer_from_the_wrong_peer_is_bad_status(healthy: Lab) -> None:
    r = in_node(healthy, via(server_match="^queue-server$"))
    assert r.outcome is Outcome.BAD_STATUS, r
    assert (r.status_code, r.extra["leg"], r.extra["server"]) == (
        200,
        "pbx_to_server",
        "ivr-server",
    )


def test_pbx_frozen_blames_the_vip_leg_not_the_server(healthy: Lab) -> None:
    os.killpg(healthy.pbx.pid, signal.SIGSTOP)
    r = in_node(healthy, via(timeout_s=1.0))
    assert r.outcome is Outcome.TIMEOUT, r
    assert (r.extra["leg"], r.scope, r.status_code) == ("vip", "node", None)
    assert "no SIP answer from the VIP" in r.detail
    # The path from the VIP to the server does not pass through the PBX: still fine.
    r = in_node(healthy, from_vip())
    assert (r.outcome, r.extra["leg"]) == (Outcome.OK, None), r


def test_nothing_listening_on_the_vip_is_refused_on_the_vip_leg(healthy: Lab) -> None:
    r = in_node(healthy, via(outbound_proxy=f"sip:{VIP}:5999"))
    assert r.outcome is Outcome.REFUSED, r
    assert (r.extra["leg"], r.scope) == ("vip", "node")
    r = in_node(healthy, via(outbound_proxy=f"sip:{VIP}:5999;transport=tcp"))
    assert (r.outcome, r.extra["leg"]) == (Outcome.REFUSED, "vip"), r
    assert "cannot reach the VIP" in r.detail


def test_vip_removed(healthy: Lab) -> None:
    healthy.node.del_address(f"{VIP}/32", "lan0")
    r = in_node(healthy, via(timeout_s=1.0))
    assert r.outcome in (Outcome.TIMEOUT, Outcome.UNREACHABLE), r
    assert (r.extra["leg"], r.scope) == ("vip", "node")
    r = in_node(healthy, from_vip())
    assert r.outcome is Outcome.LOCAL_ERROR, r
    assert (r.extra["leg"], r.extra["vip_held"]) == ("vip", False)
    assert "not held by this node" in r.detail


def test_config_file_through_the_cli(healthy: Lab, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f"""
[sip]
t1_s = 0.25

[[probes]]
name = "ivr-via-vip"
kind = "via_vip_sip"
uri = "{IVR_URI}"
outbound_proxy = "{VIP_URI}"
server_match = "ivr-server"

[[probes]]
name = "ivr-from-vip"
kind = "from_vip"
uri = "{IVR_URI}"
source_address = "{VIP}"
method = "tcp"
"""
    )
    healthy.ivr.set_fault("OPTIONS", drop=True)
    argv = [sys.executable, "-m", "sipwatch", "probe", "--config", str(config), "--json"]
    done = subprocess.run(
        healthy.node.exec_argv(argv), capture_output=True, timeout=30, check=False
    )
    results = {r["probe"]: r for r in json.loads(done.stdout)}
    assert results["ivr-via-vip"]["outcome"] == "timeout", results
    assert results["ivr-via-vip"]["extra"]["leg"] == "pbx_to_server"
    assert results["ivr-via-vip"]["scope"] == "remote"
    assert results["ivr-from-vip"]["outcome"] == "ok"  # TCP still accepted: SIP-level drop
    assert done.returncode == 3  # the CLI's "no answer" exit code
