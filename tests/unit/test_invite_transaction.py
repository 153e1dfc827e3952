"""RFC 3261 §17.1.1 / RFC 6026 INVITE client transaction and the requests around it, driven
with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from sipwatch.errors import SipParseError
from sipwatch.sip.invite import (
    Answered,
    InviteState,
    InviteTimers,
    InviteTransaction,
    Provisional,
    Rejected,
    SendCancel,
    TimedOut,
    Transmit,
    build_ack_2xx,
    build_bye,
    build_cancel,
    dialog_from_2xx,
    header_tag,
    name_addr_uri,
)
from sipwatch.sip.message import Headers, Request, Response, build_request, parse_message
from sipwatch.sip.transaction import new_branch

T = InviteTimers(t1_s=0.5, timer_d_s=32.0)


def invite(branch: str | None = None, *, routes: tuple[str, ...] = ()) -> Request:
    return build_request(
        "INVITE",
        "sip:ivr@192.0.2.10:5060",
        transport="udp",
        local=("127.0.0.1", 40000),
        from_uri="sip:sipwatch@127.0.0.1",
        to_uri="sip:ivr@192.0.2.10",
        call_id="call-1",
        from_tag="ft1",
        cseq=7,
        branch=branch or new_branch(),
        headers=(
            *(("Route", r) for r in routes),
            ("Proxy-Authorization", 'Digest username="m", response="x"'),
            ("Contact", "<sip:sipwatch@127.0.0.1:40000>"),
            ("Content-Type", "application/sdp"),
        ),
        body=b"v=0\r\n",
    )


def response_to(
    req: Request,
    code: int,
    *,
    tag: str | None = "rt9",
    method: str = "INVITE",
    branch: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> Response:
    via = req.headers.get("Via") or ""
    if branch is not None:
        via = via.replace(req.top_via.branch or "", branch)
    to = "<sip:ivr@192.0.2.10>" + (f";tag={tag}" if tag else "")
    items = (
        ("Via", via),
        ("From", req.headers.get("From") or ""),
        ("To", to),
        ("Call-ID", req.call_id),
        ("CSeq", f"{req.cseq[0]} {method}"),
        *extra,
        ("Content-Length", "0"),
    )
    return Response(Headers(items), b"", status_code=code, reason="R")


def fire_all(tx: InviteTransaction, stop_at: float) -> list[tuple[float, object]]:
    out: list[tuple[float, object]] = []
    while (when := tx.next_timer()) is not None and when <= stop_at:
        out += [(when, a) for a in tx.on_timer(when)]
    return out


def test_udp_timer_a_doubles_without_cap_then_timer_b_at_64_t1():
    tx = InviteTransaction(invite(), reliable=False, timers=T)
    [first] = tx.start(0.0)
    assert isinstance(first, Transmit) and first.data.startswith(b"INVITE ")
    events = fire_all(tx, 100.0)
    sent = [when for when, a in events if isinstance(a, Transmit)]
    # A: 0.5, 1, 2, 4, 8, 16 -> 0.5, 1.5, 3.5, 7.5, 15.5, 31.5; B at 32 (no T2 cap: §17.1.1.2)
    assert sent == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(a.retransmission for _, a in events if isinstance(a, Transmit))
    assert isinstance(events[-1][1], TimedOut) and events[-1][0] == 32.0
    assert tx.state is InviteState.TERMINATED and tx.timed_out and tx.retransmissions == 6


def test_timer_b_is_the_deadline_when_earlier_and_reliable_has_no_timer_a():
    tx = InviteTransaction(invite(), reliable=True, timers=T, deadline=5.0)
    tx.start(0.0)
    assert tx.next_timer() == 5.0
    events = fire_all(tx, 100.0)
    assert [type(a) for _, a in events] == [TimedOut]
    assert tx.retransmissions == 0


def test_provisional_stops_retransmissions_and_records_pdd():
    req = invite()
    tx = InviteTransaction(req, reliable=False, timers=T)
    tx.start(0.0)
    tx.on_timer(0.5)
    assert [type(a) for a in tx.on_response(response_to(req, 100, tag=None), 0.6)] == [Provisional]
    assert tx.state is InviteState.PROCEEDING and tx.first_ringing_at is None
    tx.on_response(response_to(req, 180), 1.2)
    assert tx.first_provisional_at == 0.6 and tx.first_ringing_at == 1.2
    assert tx.next_timer() is None  # RFC: Proceeding waits; no deadline was given
    assert fire_all(tx, 100.0) == []


def test_2xx_enters_accepted_every_retransmission_goes_up_then_timer_m():
    req = invite()
    tx = InviteTransaction(req, reliable=False, timers=T)
    tx.start(0.0)
    ok = response_to(req, 200)
    assert tx.on_response(ok, 0.3) == [Answered(ok)]
    assert tx.state is InviteState.ACCEPTED and tx.done
    assert tx.next_timer() == pytest.approx(32.3)  # Timer M = 64*T1, no more Timer A/B
    assert tx.on_response(ok, 0.8) == [Answered(ok, retransmission=True)]
    forked = response_to(req, 200, tag="other-fork")
    assert tx.on_response(forked, 0.9) == [Answered(forked, retransmission=True)]
    assert tx.on_response(response_to(req, 486), 1.0) == []  # non-2xx in Accepted: dropped
    assert tx.answers == 3 and tx.final is ok
    assert fire_all(tx, 100.0) == [] and tx.state is InviteState.TERMINATED


def test_non_2xx_final_is_acked_by_the_transaction_and_absorbed_in_completed():
    req = invite(routes=("<sip:proxy.example;lr>",))
    tx = InviteTransaction(req, reliable=False, timers=InviteTimers(t1_s=0.5, timer_d_s=2.0))
    tx.start(0.0)
    busy = response_to(req, 486)
    actions = tx.on_response(busy, 0.2)
    assert isinstance(actions[0], Transmit) and actions[1] == Rejected(busy)
    ack = parse_message(actions[0].data)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == req.uri  # §17.1.1.3: same Request-URI
    assert ack.top_via.branch == req.top_via.branch  # same branch: part of the transaction
    assert len(ack.vias) == 1
    assert ack.cseq == (7, "ACK")
    assert header_tag(ack.header("To") or "") == "rt9"  # the response's To, with its tag
    assert ack.header("From") == req.header("From") and ack.call_id == req.call_id
    assert ack.header_all("Route") == ["<sip:proxy.example;lr>"]
    assert ack.body == b""
    assert tx.state is InviteState.COMPLETED and tx.next_timer() == pytest.approx(2.2)
    again = tx.on_response(busy, 1.0)  # retransmitted 486: ACK again, not passed up
    assert again == [Transmit(actions[0].data, retransmission=True)]
    assert fire_all(tx, 10.0) == [] and tx.state is InviteState.TERMINATED


def test_timer_d_is_zero_on_reliable():
    req = invite()
    tx = InviteTransaction(req, reliable=True, timers=T)
    tx.start(0.0)
    actions = tx.on_response(response_to(req, 503), 0.1)
    assert [type(a) for a in actions] == [Transmit, Rejected]
    assert tx.state is InviteState.TERMINATED


def test_cancel_is_deferred_until_a_provisional_arrives():
    req = invite()
    tx = InviteTransaction(req, reliable=False, timers=T)
    tx.start(0.0)
    assert tx.cancel(0.1) == []  # §9.1: MUST NOT send CANCEL before a provisional
    actions = tx.on_response(response_to(req, 180), 0.7)
    assert isinstance(actions[0], SendCancel) and isinstance(actions[1], Provisional)
    assert tx.cancel_sent and tx.cancel(0.8) == []  # once only


def test_cancel_never_comes_if_no_provisional_arrives():
    tx = InviteTransaction(invite(), reliable=False, timers=T)
    tx.start(0.0)
    tx.cancel(0.1)
    events = fire_all(tx, 100.0)
    assert not any(isinstance(a, SendCancel) for _, a in events)
    assert isinstance(events[-1][1], TimedOut) and not tx.cancel_sent


def test_cancel_request_follows_section_9_1():
    req = invite(routes=("<sip:p1;lr>", "<sip:p2;lr>"))
    cancel = build_cancel(req)
    assert cancel.method == "CANCEL" and cancel.uri == req.uri
    assert cancel.top_via.branch == req.top_via.branch and len(cancel.vias) == 1
    assert cancel.cseq == (7, "CANCEL")
    for name in ("From", "To", "Call-ID"):
        assert cancel.header(name) == req.header(name)
    assert cancel.header_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert cancel.body == b"" and cancel.header("Proxy-Authorization") is None
    assert isinstance(parse_message(cancel.to_bytes()), Request)


def test_deadline_in_proceeding_cancels_then_487_is_acked():
    req = invite()
    tx = InviteTransaction(
        req, reliable=False, timers=InviteTimers(t1_s=0.5, cancel_wait_s=3.0), deadline=5.0
    )
    tx.start(0.0)
    tx.on_response(response_to(req, 180), 0.2)
    assert tx.next_timer() == 5.0
    [cancel] = tx.on_timer(5.0)
    assert isinstance(cancel, SendCancel) and cancel.request.method == "CANCEL"
    assert tx.next_timer() == 8.0  # waiting for the 487, bounded
    # The 200 to the CANCEL has the same branch but CSeq CANCEL: not this transaction's.
    assert not tx.matches(response_to(req, 200, method="CANCEL"))
    terminated = response_to(req, 487)
    assert tx.matches(terminated)
    actions = tx.on_response(terminated, 5.1)
    assert [type(a) for a in actions] == [Transmit, Rejected]
    assert parse_message(actions[0].data).cseq == (7, "ACK")  # type: ignore[union-attr]


def test_no_final_after_cancel_gives_up():
    req = invite()
    tx = InviteTransaction(req, reliable=True, timers=InviteTimers(cancel_wait_s=1.0))
    tx.start(0.0)
    tx.on_response(response_to(req, 183), 0.1)
    assert isinstance(tx.cancel(2.0)[0], SendCancel)
    assert fire_all(tx, 10.0) == [(3.0, TimedOut("no final response after CANCEL"))]


def test_2xx_racing_the_cancel_is_still_passed_up():
    req = invite()
    tx = InviteTransaction(req, reliable=False, timers=T)
    tx.start(0.0)
    tx.on_response(response_to(req, 180), 0.1)
    tx.cancel(0.2)
    ok = response_to(req, 200)
    assert tx.on_response(ok, 0.3) == [Answered(ok)]  # the TU must ACK it, then BYE (§9.1)


def test_matching_ignores_other_branches_and_garbage():
    req = invite()
    tx = InviteTransaction(req, reliable=False, timers=T)
    assert tx.matches(response_to(req, 200))
    assert not tx.matches(response_to(req, 200, branch=new_branch()))
    broken = Response(Headers((("Via", "garbage"),)), b"", status_code=200)
    assert not tx.matches(broken)


def test_transport_error_ends_the_transaction():
    tx = InviteTransaction(invite(), reliable=True, timers=T)
    tx.start(0.0)
    tx.on_transport_error("connection reset")
    assert tx.done and tx.state is InviteState.TERMINATED and tx.next_timer() is None


def test_only_invite_with_an_rfc3261_branch():
    with pytest.raises(ValueError):
        InviteTransaction(invite(branch="oldstyle"), reliable=True)
    options = build_request(
        "OPTIONS",
        "sip:x",
        transport="udp",
        local=("127.0.0.1", 1),
        from_uri="sip:a@b",
        to_uri="sip:x",
        call_id="c",
        from_tag="t",
        cseq=1,
        branch=new_branch(),
    )
    with pytest.raises(ValueError):
        InviteTransaction(options, reliable=True)
    tx = InviteTransaction(invite(), reliable=True)
    tx.start(0.0)
    with pytest.raises(RuntimeError):
        tx.start(1.0)


# --- dialog, 2xx ACK, BYE -------------------------------------------------------------------

RECORD_ROUTES = (
    ("Record-Route", "<sip:10.0.0.2;lr;ftag=ft1>"),
    ("Record-Route", "<sip:10.0.0.1;lr>, <sip:10.0.0.0;lr>"),
)


def ok_with(req: Request, *extra: tuple[str, str]) -> Response:
    return response_to(req, 200, extra=extra)


def test_dialog_from_2xx_reverses_record_route_and_takes_contact():
    req = invite()
    ok = ok_with(req, *RECORD_ROUTES, ("Contact", '"IVR" <sip:ivr@192.0.2.20:5070;transport=udp>'))
    dialog = dialog_from_2xx(req, ok)
    assert dialog.route_set == (
        "<sip:10.0.0.0;lr>",
        "<sip:10.0.0.1;lr>",
        "<sip:10.0.0.2;lr;ftag=ft1>",
    )
    assert dialog.remote_target == "sip:ivr@192.0.2.20:5070;transport=udp"
    assert (dialog.remote_tag, dialog.local_tag, dialog.call_id) == ("rt9", "ft1", "call-1")
    assert dialog.invite_cseq == 7 and dialog.local == ("127.0.0.1", 40000)
    assert dialog.next_hop == "sip:10.0.0.0;lr" and not dialog.strict_route


def test_ack_for_2xx_is_a_new_transaction_to_the_remote_target_via_the_route_set():
    req = invite()
    ok = ok_with(req, *RECORD_ROUTES, ("Contact", "<sip:ivr@192.0.2.20:5070>"))
    dialog = dialog_from_2xx(req, ok)
    branch = new_branch()
    ack = build_ack_2xx(dialog, branch)
    parsed = parse_message(ack.to_bytes())
    assert isinstance(parsed, Request)
    assert parsed.method == "ACK" and parsed.uri == "sip:ivr@192.0.2.20:5070"
    assert parsed.top_via.branch == branch != req.top_via.branch  # §13.2.2.4: new branch
    assert parsed.cseq == (7, "ACK")  # the INVITE's number
    assert header_tag(parsed.header("To") or "") == "rt9"
    assert header_tag(parsed.header("From") or "") == "ft1"
    assert parsed.header_all("Route") == list(dialog.route_set)
    # §13.2.2.4: the ACK carries the INVITE's credentials.
    assert parsed.header("Proxy-Authorization") == req.header("Proxy-Authorization")


def test_bye_increments_cseq_and_uses_the_dialog():
    req = invite()
    dialog = dialog_from_2xx(req, ok_with(req, ("Contact", "<sip:ivr@192.0.2.20>")))
    bye = build_bye(dialog, new_branch())
    assert bye.method == "BYE" and bye.cseq == (8, "BYE") and bye.uri == "sip:ivr@192.0.2.20"
    assert bye.header_all("Route") == [] and bye.header("Proxy-Authorization") is None
    assert build_bye(dialog, new_branch(), cseq=20).cseq == (20, "BYE")


def test_strict_router_becomes_the_request_uri():
    req = invite()
    ok = ok_with(req, ("Record-Route", "<sip:strict.example>"), ("Contact", "<sip:ivr@h>"))
    dialog = dialog_from_2xx(req, ok)
    assert dialog.strict_route
    bye = build_bye(dialog, new_branch())
    assert bye.uri == "sip:strict.example"  # §12.2.1.1
    assert bye.header_all("Route") == ["<sip:ivr@h>"]


@pytest.mark.parametrize(
    ("extra", "tag", "why"),
    [
        ((), "rt9", "Contact"),
        ((("Contact", "<sip:a@h>"), ("Contact", "<sip:b@h>")), "rt9", "Contact"),
        ((("Contact", "<http://nope>"),), "rt9", "scheme"),
        ((("Contact", "<sip:a@h>"),), None, "To tag"),
        ((("Contact", "<sip:a@h>"), ("Record-Route", "<sip:>")), "rt9", "host"),
    ],
)
def test_a_2xx_that_cannot_make_a_dialog_is_a_parse_error(extra, tag, why):
    req = invite()
    ok = response_to(req, 200, tag=tag, extra=extra)
    with pytest.raises(SipParseError, match=why):
        dialog_from_2xx(req, ok)


def test_name_addr_helpers():
    assert name_addr_uri('"A, B" <sip:a@h;lr>;tag=x') == "sip:a@h;lr"
    assert name_addr_uri("sip:a@h;tag=x") == "sip:a@h"
    assert header_tag("<sip:a@h;tag=inuri>;tag=real") == "real"
    assert header_tag("<sip:a@h>") is None
    with pytest.raises(SipParseError):
        name_addr_uri("<sip:a@h")


def test_2xx_passed_up_at_most_max_answers_times_then_absorbed():
    # sipp answers each ACK of a retransmitted 200 with the 200 again: without a cap a
    # caller that ACKs every 2xx (RFC 6026) ping-pongs with it until Timer M.
    req = invite()
    tx = InviteTransaction(req, reliable=False, timers=InviteTimers(max_answers=3))
    tx.start(0.0)
    ok = response_to(req, 200)
    passed = [a for i in range(10) for a in tx.on_response(ok, 0.1 + i / 100)]
    assert passed == [Answered(ok), *[Answered(ok, retransmission=True)] * 2]
    assert tx.answers == 3 and tx.absorbed == 7 and tx.state is InviteState.ACCEPTED
    assert InviteTimers().max_answers == 32
    with pytest.raises(ValueError, match="max_answers"):
        InviteTimers(max_answers=0)
