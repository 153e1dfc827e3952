"""`sipwatch probe --method INVITE` against sipp as the IVR, one scenario per call shape.

Each scenario (tests/data/sipp/) runs one call (`-m 1`) and ends on the `<recv>` of what it
expects from the caller — the ACK of a final response, the CANCEL, the BYE — so sipp's exit
status 0 proves the caller's side of the call was complete; our JSON proves what we
concluded. sipp is started on free ports and stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import MissingToolError
from testbed.sipp import SippIvr, start_sipp_ivr

pytestmark = pytest.mark.peers
SCENARIOS = Path(__file__).parent.parent / "data" / "sipp"
IVR_USER, IVR_PASSWORD = "monitor", "ivr-secret-7"


@pytest.fixture
def ivr(tmp_path: Path) -> Iterator[Any]:
    started: list[SippIvr] = []

    def start(name: str, *, rtp_echo: bool = True, transport: str = "udp") -> SippIvr:
        try:
            peer = start_sipp_ivr(
                SCENARIOS / f"{name}.xml",
                tmp_path,
                rtp_echo=rtp_echo,
                transport=transport,
                keys={"user": IVR_USER, "password": IVR_PASSWORD},
            )
        except MissingToolError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


def call(uri: str, *args: str, timeout_s: float = 20.0) -> tuple[int, dict[str, Any], str]:
    """The real CLI, as an operator runs it: exit status, its JSON, its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "sipwatch", "probe", uri, "--method", "INVITE", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def sipp_passed(peer: SippIvr) -> None:
    status = peer.wait(10)
    assert status == 0, f"sipp saw an incomplete call (exit {status}):\n{peer.explain()}"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_answered_with_echo_is_ok_and_every_packet_comes_back(ivr, transport):
    peer = ivr("answer", transport=transport)
    rc, r, _ = call(peer.uri())
    sipp_passed(peer)  # the ACK and the BYE arrived
    assert (rc, r["outcome"], r["status_code"], r["transport"]) == (0, "ok", 200, transport), r
    x = r["extra"]
    # 1 s of 20 ms slots; on a loaded host our sender skips the slots it woke too late for
    assert x["rtp_sent"] + x["rtp_late_slots"] == 50 and x["rtp_sent"] >= 40, x
    assert x["rtp_received"] >= x["rtp_sent"] - 2 and x["rtp_loss_pct"] <= 5.0, x
    assert x["bye_status"] == 200 and x["ended_by"] == "us"
    assert x["pdd_ms"] is not None and x["answer_ms"] >= x["pdd_ms"]
    assert x["jitter_ms"] is not None and 0 < x["max_gap_ms"] < 200


def test_answered_without_echo_is_no_media_exit_1_and_still_ended(ivr):
    peer = ivr("answer", rtp_echo=False)
    rc, r, _ = call(peer.uri(), "--media-s", "0.5")
    sipp_passed(peer)
    assert (rc, r["outcome"]) == (1, "no_media"), r
    assert r["extra"]["rtp_sent"] > 0 and r["extra"]["rtp_received"] == 0
    assert r["extra"]["rtp_loss_pct"] == 100.0 and r["extra"]["bye_status"] == 200
    assert "no RTP came back" in r["detail"]


def test_busy_is_bad_status_and_the_486_is_acked(ivr):
    peer = ivr("reject_486")
    rc, r, _ = call(peer.uri())
    sipp_passed(peer)
    assert (rc, r["outcome"], r["status_code"]) == (1, "bad_status", 486), r
    assert r["extra"]["rtp_sent"] == 0 and r["extra"]["bye_status"] is None


def test_503_with_retry_after_is_draining(ivr):
    peer = ivr("reject_503")
    rc, r, _ = call(peer.uri())
    sipp_passed(peer)
    assert (rc, r["outcome"], r["retry_after_s"]) == (1, "draining", 30.0), r


def test_ringing_past_the_deadline_is_cancelled_and_the_487_acked(ivr):
    peer = ivr("ring_until_cancel")
    rc, r, _ = call(peer.uri(), "--timeout", "1")
    sipp_passed(peer)  # sipp saw the CANCEL and the ACK of its 487
    assert (rc, r["outcome"], r["status_code"]) == (3, "timeout", 487), r
    assert "CANCEL answered 200, 487 ACKed" in r["detail"]
    assert r["extra"]["pdd_ms"] is not None and r["extra"]["answer_ms"] is None


def test_a_retransmitted_200_is_acked_again_and_the_ping_pong_is_capped(ivr):
    """sipp answers the (byte-identical, §13.2.2.4) ACK of its second 200 with that 200
    again, for ever: the caller ACKs each one (RFC 6026 §7.2) up to max_answers (32)."""
    peer = ivr("answer_twice")
    rc, r, _ = call(peer.uri(), "--media-s", "0.3")
    sipp_passed(peer)
    assert (rc, r["outcome"]) == (0, "ok"), r
    acks = r["extra"]["acks"]
    assert 2 <= acks <= 32, acks
    assert peer.received("ACK") == acks and peer.received("BYE") == 1


def test_401_then_the_retry_with_credentials_from_a_file_is_verified_by_sipp(ivr, tmp_path):
    secret = tmp_path / "ivr.pass"
    secret.write_text(IVR_PASSWORD + "\n")
    secret.chmod(0o600)
    peer = ivr("auth_401")
    rc, r, stderr = call(
        peer.uri(), "--user", IVR_USER, "--password-file", str(secret), "--media-s", "0"
    )
    sipp_passed(peer)  # 401 ACKed; verifyauth accepted the retried INVITE; ACK; BYE
    assert (rc, r["outcome"], r["status_code"]) == (0, "ok", 200), r
    assert r["detail"] == "answered, signalling only" and r["extra"]["bye_status"] == 200
    assert IVR_PASSWORD not in json.dumps(r) + stderr


def test_401_with_a_wrong_password_fails_on_both_sides(ivr, tmp_path):
    secret = tmp_path / "ivr.pass"
    secret.write_text("not-the-password\n")
    peer = ivr("auth_401")
    rc, r, _ = call(peer.uri(), "--user", IVR_USER, "--password-file", str(secret))
    assert peer.wait(10) != 0, "sipp's verifyauth must refuse a wrong password"
    assert rc != 0 and r["outcome"] != "ok", r


def test_a_200_without_sdp_is_malformed_and_the_call_is_ended(ivr):
    peer = ivr("answer_no_sdp")
    rc, r, _ = call(peer.uri())
    sipp_passed(peer)  # ACKed and BYE'd all the same
    assert (rc, r["outcome"]) == (3, "malformed"), r
    assert "no usable SDP answer" in r["detail"] and r["extra"]["bye_status"] == 200


def test_a_bye_from_the_far_end_during_media_is_answered_and_reported(ivr):
    peer = ivr("bye_from_far_end")
    rc, r, _ = call(peer.uri())
    sipp_passed(peer)  # sipp got our 200 to its BYE
    assert (rc, r["outcome"]) == (0, "ok"), r
    x = r["extra"]
    assert x["ended_by"] == "remote" and x["bye_status"] is None
    assert 0 < x["rtp_sent"] < 50, "media stops when the far end hangs up"
    assert "the far end ended the call" in r["detail"]


# -- the call is ended on every exit path: a probe task cancelled mid-call -------------------


async def _cancel_once(sent_or_received: str, start: str, peer: SippIvr, **spec: Any) -> None:
    """Run the probe in a task, cancel it once the trace shows `start` (bounded), and let
    sipp say whether the call was still ended properly."""
    import asyncio

    from sipwatch import trace
    from sipwatch.probes import run_probe
    from sipwatch.probes._sip import ProbeContext
    from sipwatch.probes.sip_call import SipCallSpec

    with trace.tracing("cancelled") as tr:
        task = asyncio.create_task(run_probe(SipCallSpec(uri=peer.uri(), **spec), ProbeContext()))
        loop = asyncio.get_running_loop()
        until = loop.time() + 5
        while not any(
            e.direction == sent_or_received and e.text.startswith(start) for e in tr.events
        ):
            assert loop.time() < until and not task.done(), tr.render()
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    status = await asyncio.to_thread(peer.wait, 10)
    assert status == 0, f"the cancelled probe left sipp's call incomplete:\n{peer.explain()}"


async def test_a_probe_cancelled_during_media_still_sends_its_bye(ivr):
    await _cancel_once("sent", "ACK ", ivr("answer"), media_s=10.0)


async def test_a_probe_cancelled_while_ringing_still_cancels_and_acks_the_487(ivr):
    await _cancel_once("received", "SIP/2.0 180", ivr("ring_until_cancel"), timeout_s=10.0)


# -- behind a record-routing proxy: Kamailio between the probe and the IVR -------------------


async def test_ack_and_bye_follow_the_route_set_of_a_record_routing_proxy(ivr, tmp_path):
    """Kamailio record-routes the INVITE; the probe's ACK and BYE must carry its Route
    (Kamailio logs each in-dialog request it routed by the route set) and reach sipp through
    it (the scenario checks they arrive with the proxy's Via on top of ours)."""
    import asyncio

    from sipwatch.probes import run_probe
    from sipwatch.probes._sip import ProbeContext
    from sipwatch.probes.sip_call import SipCallSpec
    from testbed import start_kamailio

    try:
        kam = start_kamailio(tmp_path / "kam", tls=False, ws=False, record_route=True)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        peer = ivr("answer_via_proxy")
        proxy = f"sip:{kam.host}:{kam.udp_port}"
        spec = SipCallSpec(uri=peer.uri(), outbound_proxy=proxy, media_s=0.3)
        r = await run_probe(spec, ProbeContext())
        status = await asyncio.to_thread(peer.wait, 10)
        assert status == 0, f"the ACK or BYE did not come through the proxy:\n{peer.explain()}"
        assert r.outcome.value == "ok" and r.extra["bye_status"] == 200, r
        log = kam.log_file.read_text()
        for method in ("ACK", "BYE"):
            assert f"dialog: {method} routed by the route set" in log, log[-2000:]
        assert "without a Route to this proxy" not in log
    finally:
        kam.stop()


def test_a_call_probe_from_a_config_file(ivr, tmp_path):
    """`[[probes]] kind = "sip_call"` validates and runs as the daemon runs it (asyncio)."""
    peer = ivr("answer")
    config = tmp_path / "sipwatch.toml"
    config.write_text(
        f'[[probes]]\nname = "call-ivr"\nkind = "sip_call"\nuri = "{peer.uri()}"\n'
        "media_s = 0.4\ntimeout_s = 3.0\nteardown_s = 1.0\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "sipwatch", "probe", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    sipp_passed(peer)
    r = json.loads(done.stdout)
    assert (done.returncode, r["probe"], r["kind"], r["outcome"]) == (
        0,
        "call-ivr",
        "sip_call",
        "ok",
    ), r
    assert r["extra"]["rtp_sent"] + r["extra"]["rtp_late_slots"] == 20


async def test_a_call_over_tls_through_a_record_routing_kamailio_to_a_udp_ivr(tmp_path):
    """The probe's INVITE, ACK and BYE over TLS to Kamailio (certificate verified against
    its CA), which record-routes and relays them over UDP to sipp; media goes direct. sipp's
    exit status says the ACK and the BYE arrived through the proxy. (This sipp is built
    without OpenSSL, so it cannot be the TLS end itself.)"""
    import asyncio

    from sipwatch.probes import run_probe
    from sipwatch.probes._sip import ProbeContext
    from sipwatch.probes.sip_call import SipCallSpec
    from testbed import start_kamailio

    try:
        kam = start_kamailio(tmp_path / "kam", tls=True, ws=False, record_route=True)
        ivr = start_sipp_ivr(SCENARIOS / "answer_via_proxy.xml", tmp_path)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        spec = SipCallSpec(
            uri=ivr.uri(), outbound_proxy=f"sip:{kam.host}:{kam.tls_port};transport=tls",
            tls_ca_file=str(kam.cert_file), media_s=0.3,
        )  # fmt: skip
        r = await run_probe(spec, ProbeContext())
        status = await asyncio.to_thread(ivr.wait, 10)
        assert status == 0, f"the ACK or BYE did not come through the proxy:\n{ivr.explain()}"
        assert (r.outcome.value, r.transport, r.extra["bye_status"]) == ("ok", "tls", 200), r
        assert r.extra["rtp_received"] > 0 and r.tls_not_after is not None, r
        log = kam.log_file.read_text()
        for method in ("ACK", "BYE"):
            assert f"dialog: {method} routed by the route set" in log, log[-2000:]
    finally:
        ivr.stop()
        kam.stop()
