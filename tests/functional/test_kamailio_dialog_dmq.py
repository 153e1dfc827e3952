"""Kamailio's dialog + dmq replication, as the lab's PBX nodes will run it (issue 12 §4).

Two relaying Kamailio "nodes" on loopback addresses of their own (127.0.0.2, 127.0.0.3), DMQ
between them, each with its own h_id_start. A real sipp caller places a call through node A
to a real sipp UAS; node A record-routes it; while the call is up both nodes list it
(`kamcmd dlg.list`), so a node taking over the VIP would know the established call. The
caller's ACK and BYE follow the route set, and both sipp instances exit 0 only if every
message of the call arrived.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from testbed.kamailio import Dmq, KamailioPeer, start_kamailio
from testbed.process import free_port, require_tool, stop_process

CALL_MS = 4000


def _dialogs(node: KamailioPeer) -> dict[str, tuple[int, int]]:
    """Call-ID -> (state, h_id) of the dialogs `node` knows (state 4: confirmed)."""
    out = node.kamcmd("dlg.list")
    found = re.findall(r"h_id:\s*(\d+).*?call-id:\s*(\S+).*?state:\s*(\d+)", out, re.S)
    return {call_id: (int(state), int(h_id)) for h_id, call_id, state in found}


def _confirmed(node: KamailioPeer) -> list[str]:
    return [call_id for call_id, (state, _) in _dialogs(node).items() if state == 4]


def _peers_active(node: KamailioPeer) -> int:
    """How many DMQ nodes other than itself `node` sees active."""
    blocks = node.kamcmd("dmq.list_nodes").split("}")
    return sum("status: active" in b and "local: 0" in b for b in blocks)


def _wait(pred, timeout_s: float) -> object:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")


@pytest.fixture()
def nodes(tmp_path: Path) -> Iterator[tuple[KamailioPeer, KamailioPeer]]:
    port_a = free_port("both", "127.0.0.2")
    port_b = free_port("both", "127.0.0.3")
    a_addr, b_addr = f"127.0.0.2:{port_a}", f"127.0.0.3:{port_b}"
    common = {"forward": True, "tls": False, "ws": False}
    a = start_kamailio(
        tmp_path / "a", host="127.0.0.2", udp_port=port_a, server_name="pbx-a",
        dmq=Dmq(server=a_addr, peers=(a_addr,), h_id_start=0, h_id_step=2), **common,
    )  # fmt: skip
    try:
        b = start_kamailio(
            tmp_path / "b", host="127.0.0.3", udp_port=port_b, server_name="pbx-b",
            dmq=Dmq(server=b_addr, peers=(a_addr,), h_id_start=1, h_id_step=2), **common,
        )  # fmt: skip
    except BaseException:
        a.stop()
        raise
    try:
        # A is the seed (its own notification address): B, started after it, tells A it is
        # there and learns A's node list; a node that notified a peer not yet listening
        # would only find it again at its next ping (60 s).
        _wait(lambda: _peers_active(a) == 1 and _peers_active(b) == 1, 10.0)
        yield a, b
    finally:
        b.stop()
        a.stop()


def test_a_call_through_node_a_is_known_to_node_b(tmp_path: Path, nodes) -> None:
    a, b = nodes
    uas, uac = _sipp_call(tmp_path, f"127.0.0.2:{a.udp_port}", CALL_MS)
    try:
        on_a = _wait(lambda: _confirmed(a), CALL_MS / 1000)
        assert isinstance(on_a, list) and len(on_a) == 1
        # Replicated: node B, which never saw a SIP message of this call, knows it confirmed,
        # under the hash id A gave it (even: A's h_id_start 0, step 2).
        try:
            assert _wait(lambda: _confirmed(b), 2.0) == on_a
        except AssertionError:
            raise AssertionError(f"B: {_dialogs(b)}, A: {_dialogs(a)}") from None
        (call_id,) = on_a
        assert _dialogs(b)[call_id][1] == _dialogs(a)[call_id][1]
        assert _dialogs(a)[call_id][1] % 2 == 0
        assert uac.wait(30) == 0, uac.stderr.read().decode() if uac.stderr else ""
        assert uas.wait(10) == 0, uas.stderr.read().decode() if uas.stderr else ""
        # The BYE went through A (record-routed): the call is over on both nodes.
        _wait(lambda: not _confirmed(a) and not _confirmed(b), 5.0)
    finally:
        for proc in (uac, uas):
            stop_process(proc)


def _sipp_call(
    tmp_path: Path, proxy: str, call_ms: int
) -> tuple[subprocess.Popen, subprocess.Popen]:
    """A sipp UAS (the IVR) and a sipp caller placing one call of call_ms through `proxy`."""
    sipp = require_tool("sipp")
    uas_port = free_port("udp")
    uas_xml = tmp_path / "uas.xml"
    uas_xml.write_text(resources.files("testbed").joinpath("sipp_uas_call.xml").read_text())
    uas = subprocess.Popen(
        [sipp, "-sf", str(uas_xml), "-i", "127.0.0.1", "-p", str(uas_port), "-m", "1",
         "-nostdin", "-timeout", "30s", "-timeout_error"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    uac_xml = tmp_path / "uac.xml"
    uac_xml.write_text(resources.files("testbed").joinpath("sipp_uac_call.xml").read_text())
    uac = subprocess.Popen(
        [sipp, f"127.0.0.1:{uas_port}", "-sf", str(uac_xml), "-s", "ivr", "-rsa", proxy,
         "-i", "127.0.0.1", "-p", str(free_port("udp")), "-m", "1", "-d", str(call_ms),
         "-nostdin", "-timeout", "30s", "-timeout_error"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    return uas, uac


def test_a_pbx_started_after_a_crash_learns_the_calls_from_a_keeper(tmp_path: Path) -> None:
    """The lab's takeover, on loopback: the PBX on 127.0.0.2 crashes mid-call and a new one
    starts on the same address (as the node that takes the VIP does); it asks the DMQ keeper
    (a dialog-only Kamailio that runs on every node, outside Pacemaker) for the dialogs, knows
    the established call, and relays its BYE along the old route set."""
    keeper_port, pbx_port = free_port("both", "127.0.0.3"), free_port("both", "127.0.0.2")
    keeper_addr, pbx_addr = f"127.0.0.3:{keeper_port}", f"127.0.0.2:{pbx_port}"
    common = {"forward": True, "tls": False, "ws": False}
    keeper = start_kamailio(
        tmp_path / "keeper", host="127.0.0.3", udp_port=keeper_port,
        dmq=Dmq(server=keeper_addr, peers=(keeper_addr,), h_id_start=1, h_id_step=2), **common,
    )  # fmt: skip
    pbx_dmq = Dmq(server=pbx_addr, peers=(keeper_addr,), h_id_start=0, h_id_step=2)
    started: list[KamailioPeer] = [keeper]
    uas = uac = None
    try:
        pbx = start_kamailio(
            tmp_path / "pbx1", host="127.0.0.2", udp_port=pbx_port, dmq=pbx_dmq, **common
        )
        started.append(pbx)
        _wait(lambda: _peers_active(keeper) == 1, 10.0)
        uas, uac = _sipp_call(tmp_path, pbx_addr, 6000)
        (call_id,) = _wait(lambda: _confirmed(pbx), 5.0)  # type: ignore[misc]
        _wait(lambda: _confirmed(keeper) == [call_id], 2.0)

        os.killpg(pbx.pid, signal.SIGKILL)  # the crash: every process of the PBX at once
        pbx.stop()
        takeover = start_kamailio(
            tmp_path / "pbx2", host="127.0.0.2", udp_port=pbx_port, dmq=pbx_dmq, **common
        )
        started.append(takeover)
        assert _wait(lambda: _confirmed(takeover), 3.0) == [call_id]
        assert uac.wait(30) == 0, uac.stderr.read().decode() if uac.stderr else ""
        assert uas.wait(10) == 0, uas.stderr.read().decode() if uas.stderr else ""
        _wait(lambda: not _confirmed(takeover) and not _confirmed(keeper), 5.0)
    finally:
        for proc in (uac, uas):
            if proc is not None:
                stop_process(proc)
        for node in reversed(started):
            node.stop()
