"""`sip_call` against hostile callees (testbed.hostile_uas, real UDP sockets): each gets a
clear outcome, never a traceback (run_probe turns a crash into local_error "internal
error"), and the call is ended — the callee's own record of what it received says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sipwatch.model import Outcome
from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_call import SipCallSpec
from testbed.hostile_uas import HostileUas, start_hostile_uas

pytestmark = pytest.mark.peers


@pytest.fixture
def callee() -> Iterator[Any]:
    started: list[HostileUas] = []

    def start(behaviour: str) -> HostileUas:
        peer = start_hostile_uas(behaviour)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


async def call(peer: HostileUas, **kw: Any):
    result = await run_probe(SipCallSpec(uri=peer.uri(), **kw), ProbeContext())
    assert "internal error" not in result.detail, result
    return result


async def test_an_sdp_answer_with_a_host_name_is_malformed_and_the_call_ended(callee):
    peer = callee("bad_sdp_address")
    r = await call(peer)
    assert r.outcome is Outcome.MALFORMED, r
    assert "not an IP literal" in r.detail and r.extra["bye_status"] == 200
    assert peer.methods() == ["INVITE", "ACK", "BYE"]


async def test_rtp_from_an_unexpected_source_is_not_media(callee):
    peer = callee("rtp_elsewhere")
    r = await call(peer, media_s=0.5)
    assert r.outcome is Outcome.NO_MEDIA, r
    assert r.extra["rtp_received"] == 0 and r.extra["rtp_unexpected_source"] > 0, r.extra
    assert peer.rtp_sent > 0 and "ignored" in r.detail
    assert peer.methods() == ["INVITE", "ACK", "BYE"]


async def test_a_200_for_another_branch_or_call_id_is_ignored(callee):
    peer = callee("foreign_answers")
    r = await call(peer)
    # Had either 200 been taken for the answer, the 486 behind them would have been dropped.
    assert (r.outcome, r.status_code) == (Outcome.BAD_STATUS, 486), r
    invite, ack = peer.wait_received(2)
    assert (invite.method, ack.method) == ("INVITE", "ACK")
    assert ack.branch == invite.branch, "only the 486 is ACKed (§17.1.1.3: same branch)"


async def test_garbage_instead_of_a_response_is_malformed_and_nothing_is_left_up(callee):
    peer = callee("garbage")
    r = await call(peer, timeout_s=1.0, teardown_s=0.5)
    assert r.outcome is Outcome.MALFORMED, r
    assert r.detail.startswith("only unparsable replies"), r.detail
    methods = peer.methods()
    assert set(methods) == {"INVITE"} and len(methods) >= 2, methods  # Timer A, then given up


async def test_nothing_listening_is_refused_at_once(closed_udp_port):
    r = await run_probe(
        SipCallSpec(uri=f"sip:ivr@127.0.0.1:{closed_udp_port}", timeout_s=3.0), ProbeContext()
    )
    assert r.outcome is Outcome.REFUSED, r
    assert r.extra["bye_status"] is None and r.extra["answer_ms"] is None


async def test_an_unreadable_password_file_is_a_local_error(tmp_path, closed_udp_port):
    spec = SipCallSpec(
        uri=f"sip:ivr@127.0.0.1:{closed_udp_port}",
        password_file=str(tmp_path / "missing.pass"),
    )
    r = await run_probe(spec, ProbeContext())
    assert r.outcome is Outcome.LOCAL_ERROR and "cannot read password file" in r.detail, r
