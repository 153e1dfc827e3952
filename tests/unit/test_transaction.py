"""RFC 3261 §17.1.2 non-INVITE client transaction, driven with an injected clock."""

from __future__ import annotations

import itertools

import pytest

from sipwatch.sip.message import Headers, Response, build_request, parse_message
from sipwatch.sip.transaction import (
    ClientTransaction,
    Failure,
    State,
    Timers,
    TransactionTable,
    new_branch,
)

T = Timers(t1_s=0.5, t2_s=4.0, t4_s=5.0)


def request(method: str = "OPTIONS", branch: str | None = None):
    return build_request(
        method,
        "sip:127.0.0.1:5060",
        transport="udp",
        local=("127.0.0.1", 40000),
        from_uri="sip:sipwatch@127.0.0.1",
        to_uri="sip:127.0.0.1",
        call_id="c1",
        from_tag="t1",
        cseq=1,
        branch=branch or new_branch(),
    )


def response_to(req, code: int, *, branch: str | None = None, method: str | None = None):
    via = req.headers.get("Via")
    if branch is not None:
        via = via.replace(req.top_via.branch, branch)
    cseq = f"1 {method or req.method}"
    items = (
        ("Via", via),
        ("From", req.headers.get("From")),
        ("To", "<sip:x>;tag=9"),
        ("Call-ID", "c1"),
        ("CSeq", cseq),
        ("Content-Length", "0"),
    )
    return Response(Headers(items), b"", status_code=code, reason="R")


def fire_until_done(tx: ClientTransaction, stop_at: float) -> list[float]:
    """Drive the timers; return the times at which a retransmission was sent."""
    sent: list[float] = []
    while (when := tx.next_timer()) is not None and when <= stop_at:
        if tx.on_timer(when) is not None:
            sent.append(when)
    return sent


def test_udp_timer_e_doubles_to_t2_then_timer_f_at_64_t1():
    tx = ClientTransaction(request(), reliable=False, timers=T)
    tx.start(0.0)
    sent = fire_until_done(tx, 100.0)
    # E: 0.5, 1, 2, 4, 4, 4 ... -> cumulative 0.5, 1.5, 3.5, 7.5, 11.5, ..., 31.5; F at 32.
    assert sent[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(b - a == pytest.approx(4.0) for a, b in itertools.pairwise(sent[3:]))
    assert sent[-1] == pytest.approx(31.5)
    assert tx.failure is Failure.TIMEOUT and tx.state is State.TERMINATED
    assert tx.retransmissions == len(sent) == 10


def test_timer_f_is_the_probe_deadline_when_earlier():
    tx = ClientTransaction(request(), reliable=False, timers=T, deadline=2.0)
    tx.start(0.0)
    sent = fire_until_done(tx, 100.0)
    assert sent == [0.5, 1.5]
    assert tx.failure is Failure.TIMEOUT
    assert tx.next_timer() is None  # nothing more is sent after giving up


def test_no_retransmission_on_reliable_transport():
    tx = ClientTransaction(request(), reliable=True, timers=T)
    tx.start(0.0)
    assert tx.next_timer() == pytest.approx(32.0)  # only Timer F
    assert fire_until_done(tx, 100.0) == []
    assert tx.retransmissions == 0 and tx.failure is Failure.TIMEOUT


def test_provisional_moves_to_proceeding_and_retransmits_every_t2():
    req = request()
    tx = ClientTransaction(req, reliable=False, timers=T)
    tx.start(0.0)
    assert tx.on_timer(0.5) is not None  # E fired once in Trying (next at 1.5)
    assert tx.on_response(response_to(req, 100), 0.6) is False
    assert tx.state is State.PROCEEDING
    sent = fire_until_done(tx, 20.0)
    assert sent[:4] == [1.5, 5.5, 9.5, 13.5]


def test_final_response_completes_then_timer_k_on_udp():
    req = request()
    tx = ClientTransaction(req, reliable=False, timers=T)
    tx.start(10.0)
    assert tx.on_response(response_to(req, 200), 10.25) is True
    assert tx.state is State.COMPLETED and tx.rtt_s == pytest.approx(0.25)
    assert tx.next_timer() == pytest.approx(15.25)  # Timer K = T4; no more E or F
    assert tx.on_response(response_to(req, 200), 11.0) is False  # retransmitted final
    assert tx.duplicates == 1
    assert tx.on_timer(15.25) is None and tx.state is State.TERMINATED


def test_timer_k_is_zero_on_reliable():
    req = request()
    tx = ClientTransaction(req, reliable=True, timers=T)
    tx.start(0.0)
    assert tx.on_response(response_to(req, 404), 0.1) is True
    assert tx.state is State.TERMINATED and tx.final is not None


def test_transport_error_terminates_at_once():
    tx = ClientTransaction(request(), reliable=False, timers=T)
    tx.start(0.0)
    tx.on_transport_error("ICMP port unreachable")
    assert tx.failure is Failure.TRANSPORT and tx.next_timer() is None


def test_matching_needs_branch_and_cseq_method():
    req = request()
    tx = ClientTransaction(req, reliable=False, timers=T)
    table = TransactionTable()
    table.add(tx)
    assert table.match(response_to(req, 200)) is tx
    assert table.match(response_to(req, 200, branch=new_branch())) is None
    assert table.match(response_to(req, 200, method="REGISTER")) is None
    assert table.unmatched == 2
    assert tx.matches(response_to(req, 200)) and not tx.matches(
        response_to(req, 200, method="INFO")
    )


def test_duplicate_branch_is_refused():
    branch = new_branch()
    table = TransactionTable()
    table.add(ClientTransaction(request(branch=branch), reliable=True, timers=T))
    with pytest.raises(ValueError):
        table.add(ClientTransaction(request(branch=branch), reliable=True, timers=T))


def test_request_needs_rfc3261_branch_and_non_invite():
    with pytest.raises(ValueError):
        ClientTransaction(request(branch="abc"), reliable=True)
    with pytest.raises(ValueError):
        ClientTransaction(request(method="INVITE"), reliable=True)


def test_built_request_has_rport_and_parses_back():
    req = request()
    parsed = parse_message(req.to_bytes())
    assert parsed.top_via.param("rport") == ""
    assert parsed.top_via.branch == req.top_via.branch
    assert parsed.headers.get("Max-Forwards") == "70"


def test_branches_are_unique_and_magic():
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000 and all(b.startswith("z9hG4bK") for b in branches)
