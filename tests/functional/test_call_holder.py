"""The lab's call holder (testbed/calls.py) against real peers on the loopback: calls placed
through a record-routing Kamailio to a sipp IVR (RTP echo), kept up with UPDATEs, ended with
BYE. What the failover measurement rests on: a proxy that stops answering for a second shows
as a signalling gap of that second and the calls survive it; a proxy that is gone shows as
calls that did not survive. sipp checks its own side: every ACK, UPDATE and BYE arrived."""

from __future__ import annotations

import itertools
import os
import signal
import time
from importlib import resources
from pathlib import Path

import pytest

from testbed import start_kamailio
from testbed.calls import CallHolder
from testbed.process import MissingToolError
from testbed.sipp import start_sipp_ivr

N = 3


@pytest.fixture()
def proxy_and_ivr(tmp_path: Path):
    scenario = tmp_path / "uas_call.xml"
    scenario.write_text(resources.files("testbed").joinpath("sipp_uas_call.xml").read_text())
    try:
        kam = start_kamailio(tmp_path / "kam", tls=False, ws=False, record_route=True)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        ivr = start_sipp_ivr(scenario, tmp_path / "ivr", calls=N, call_timeout_s=60.0)
    except BaseException:
        kam.stop()
        raise
    try:
        yield kam, ivr
    finally:
        ivr.stop()
        kam.stop()


def _holder(kam, ivr, **kw) -> CallHolder:
    return CallHolder(
        target=ivr.uri(), proxy=(kam.host, kam.udp_port), local_ip="127.0.0.1", n=N, **kw
    )


def test_a_proxy_stopped_for_a_second_is_a_one_second_gap_and_every_call_survives(
    proxy_and_ivr,
):
    kam, ivr = proxy_and_ivr
    holder = _holder(kam, ivr)
    holder.start()
    try:
        time.sleep(1.0)
        steady = time.monotonic()
        time.sleep(0.5)
        os.killpg(kam.pid, signal.SIGSTOP)
        fault = time.monotonic()
        time.sleep(1.0)
        os.killpg(kam.pid, signal.SIGCONT)
        time.sleep(1.0)
    finally:
        os.killpg(kam.pid, signal.SIGCONT)
        reports = holder.stop()
    assert ivr.wait(15) == 0, f"sipp saw an incomplete call:\n{ivr.explain()}"
    for r in reports:
        assert r.survived, r
        calm = [t for t in r.ok_times() if steady <= t < fault]
        quiet = max(b - a for a, b in itertools.pairwise(calm))
        assert len(calm) >= 2 and quiet < 0.5, (quiet, r.update_answers[:10])
        gap = r.gap_around(fault)
        assert gap is not None and 1.0 <= gap < 2.0, (gap, r)
        # the media does not cross the proxy: caller and IVR talk directly
        media = r.media_gap()
        assert media is not None and media < 0.3, media
        assert r.rtp_sent > 100 and len(r.rtp_arrivals) >= r.rtp_sent * 0.9


def test_a_proxy_that_is_gone_leaves_calls_that_did_not_survive(proxy_and_ivr):
    kam, ivr = proxy_and_ivr
    holder = _holder(kam, ivr, bye_timeout_s=1.0, answer_timeout_s=0.5)
    holder.start()
    try:
        time.sleep(0.5)
        kam.stop()
        fault = time.monotonic()
        time.sleep(1.0)
    finally:
        reports = holder.stop()
    for r in reports:
        assert not r.survived and r.bye_status is None, r
        assert r.gap_around(fault) is None and r.updates_lost >= 3, r
        assert r.answered_after(fault) == 0
