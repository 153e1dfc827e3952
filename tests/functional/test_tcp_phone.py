"""The lab's TCP phone (testbed/tcp_phone.py) against a real Kamailio on the loopback: it
registers with digest over its kept connection and keeps it alive with OPTIONS; a PBX that
restarts closes the connection, and the phone notices, reconnects and registers again — what
the lab measures for a TCP client across a failover. A PBX that is stopped (SIGSTOP) gives no
answer: noticed after answer_timeout_s."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from testbed import start_kamailio
from testbed.process import MissingToolError
from testbed.tcp_phone import TcpPhone

USERS = {"monitor": "tcp-secret"}


@pytest.fixture()
def kam(tmp_path: Path):
    try:
        peer = start_kamailio(tmp_path / "kam", tls=False, ws=False, users=USERS)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield peer
    finally:
        if peer.is_running():
            os.killpg(peer.pid, signal.SIGCONT)
        peer.stop()


def _phone(kam, **kw) -> TcpPhone:
    return TcpPhone(proxy=(kam.host, kam.tcp_port), local_ip="127.0.0.1", user="monitor",
                    password=USERS["monitor"], **kw)  # fmt: skip


def _wait(pred, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(0.05)


def test_a_restarted_pbx_is_noticed_and_the_phone_registers_again(kam):
    phone = _phone(kam)
    phone.start()
    try:
        _wait(lambda: len(phone.answers) >= 3, 5.0)
        fault = time.monotonic()
        kam.restart()
        _wait(lambda: phone.after(fault)["registered_again_s"] is not None, 10.0)
        _wait(lambda: phone.after(fault)["gap_s"] is not None, 5.0)
    finally:
        phone.stop()
    seen = phone.after(fault)
    assert seen["how"] == "closed", (seen, phone.events[-5:])
    assert seen["connections"] >= 2 and seen["noticed_s"] < 2.0, seen
    assert 0 < seen["gap_s"] < 8.0, seen


def test_a_stopped_pbx_is_noticed_after_the_answer_timeout(kam):
    phone = _phone(kam, answer_timeout_s=0.5)
    phone.start()
    try:
        _wait(lambda: len(phone.answers) >= 3, 5.0)
        os.killpg(kam.pid, signal.SIGSTOP)
        fault = time.monotonic()
        _wait(lambda: phone.after(fault)["how"] is not None, 5.0)
        os.killpg(kam.pid, signal.SIGCONT)
        _wait(lambda: phone.after(fault)["registered_again_s"] is not None, 10.0)
    finally:
        os.killpg(kam.pid, signal.SIGCONT)
        phone.stop()
    seen = phone.after(fault)
    assert seen["how"] == "no answer" and 0.3 <= seen["noticed_s"] < 1.5, seen
