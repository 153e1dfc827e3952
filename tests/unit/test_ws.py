"""The sans-IO SIP-over-WebSocket client (sipwatch.sip.ws) fed bytes from wsproto's server
role: the handshake it sends, what it accepts and refuses, framing both ways. No sockets."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from sipwatch.probes._sip import SipProbeSpec, literal_target
from sipwatch.sip.target import WsOptions
from sipwatch.sip.uri import parse_uri
from sipwatch.sip.ws import Failed, Received, Reply, Unparsable, Upgraded, WsClient

RESPONSE = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/WS abc.invalid;branch=z9hG4bKabc;rport\r\n"
    "From: <sip:a@abc.invalid>;tag=1\r\nTo: <sip:b@x>;tag=2\r\n"
    "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n"  # no Content-Length: the frame is the boundary
)


def pair(**kw) -> tuple[WsClient, WSConnection, Request]:
    """A client and a server that has read the client's upgrade request."""
    client = WsClient("127.0.0.1", 5066, secure=False, **kw)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.handshake())
    (request,) = list(server.events())
    assert isinstance(request, Request)
    return client, server, request


def upgraded(**kw) -> tuple[WsClient, WSConnection]:
    client, server, _ = pair(**kw)
    assert client.receive(server.send(AcceptConnection(subprotocol="sip"))) == [Upgraded()]
    return client, server


def test_handshake_asks_for_sip_with_host_path_and_origin():
    _, _, request = pair(options=WsOptions(path="/ws", origin="https://portal.example"))
    assert request.subprotocols == ["sip"]  # RFC 7118 §4
    assert (request.host, request.target) == ("127.0.0.1:5066", "/ws")
    assert (b"origin", b"https://portal.example") in request.extra_headers


@pytest.mark.parametrize(
    ("host", "port", "secure", "want"),
    [("pbx.example.com", 443, True, "pbx.example.com"), ("::1", 80, False, "[::1]"),
     ("10.0.0.5", 443, False, "10.0.0.5:443")],
)  # fmt: skip
def test_host_header_names_the_port_unless_it_is_the_schemes(host, port, secure, want):
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(WsClient(host, port, secure=secure).handshake())
    (request,) = list(server.events())
    assert request.host == want


def test_101_with_sip_then_text_and_binary_fragmented_messages():
    client, server = upgraded()
    (got,) = client.receive(server.send(TextMessage(data=RESPONSE)))
    assert isinstance(got, Received) and got.message.status_code == 200
    raw = RESPONSE.encode()
    first = server.send(BytesMessage(data=raw[:40], message_finished=False))
    assert client.receive(first) == []  # half a message is not a message yet
    (got,) = client.receive(server.send(BytesMessage(data=raw[40:], message_finished=True)))
    assert isinstance(got, Received) and got.message.call_id == "c1"


def test_101_without_the_sip_subprotocol_is_malformed():
    client, server, _ = pair()
    (got,) = client.receive(server.send(AcceptConnection(subprotocol=None)))
    assert isinstance(got, Failed) and got.kind == "malformed"
    assert "Sec-WebSocket-Protocol: sip" in got.detail
    assert not client.upgraded and client.frame(b"OPTIONS") == b""


@pytest.mark.parametrize("code", [403, 404, 503])
def test_refused_upgrade_is_bad_status_with_status_and_reason(code):
    client, server, _ = pair()
    data = server.send(RejectConnection(status_code=code, has_body=False))
    (got,) = client.receive(data)
    assert got == Failed("bad_status", got.detail, http_status=code)
    assert f"HTTP {code}" in got.detail


def test_plain_http_200_is_bad_status_and_reason_phrase_is_kept():
    client, _, _ = pair()
    (got,) = client.receive(b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nhi")
    assert (got.kind, got.http_status) == ("bad_status", 200)
    assert "HTTP 200 Fine Thanks" in got.detail


def test_garbage_instead_of_http_is_malformed():
    client, _, _ = pair()
    (got,) = client.receive(b"SIP/2.0 200 OK\r\n\r\n")
    assert isinstance(got, Failed) and got.kind == "malformed"
    assert client.receive(b"more") == []  # finished: nothing more is reported


def test_wrong_accept_token_is_malformed():
    client, _, _ = pair()
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
    )
    (got,) = client.receive(answer)
    assert got.kind == "malformed" and "accept" in got.detail.lower()


def test_frame_that_is_not_sip_is_unparsable_with_our_branch_when_readable():
    client, server = upgraded()
    (got,) = client.receive(server.send(TextMessage(data="hello")))
    assert isinstance(got, Unparsable) and got.branch is None
    (got,) = client.receive(server.send(TextMessage(data="SIP/2.0 2OO\r\n;branch=z9hG4bKxyz\r\n")))
    assert isinstance(got, Unparsable) and got.branch == "z9hG4bKxyz"
    (got,) = client.receive(server.send(TextMessage(data=RESPONSE)))
    assert isinstance(got, Received), "one bad frame does not break the framing"


def test_a_stream_of_non_sip_frames_ends_the_connection():
    client, server = upgraded()
    events = client.receive(b"".join(server.send(TextMessage(data="junk")) for _ in range(20)))
    assert [type(e) for e in events] == [Unparsable] * 16 + [Failed]
    assert events[-1].kind == "malformed" and "16 WebSocket messages" in events[-1].detail


def test_crlf_keepalive_frame_is_not_a_message():
    client, server = upgraded()
    assert client.receive(server.send(TextMessage(data="\r\n\r\n"))) == []


def test_message_over_the_size_limit_is_malformed():
    client, server = upgraded(max_size=1000)
    (got,) = client.receive(server.send(TextMessage(data="x" * 1001)))
    assert got.kind == "malformed" and "1000-byte limit" in got.detail


def test_ping_is_answered_with_pong():
    client, server = upgraded()
    (got,) = client.receive(server.send(Ping(payload=b"hb")))
    assert isinstance(got, Reply)
    server.receive_data(got.data)
    assert list(server.events()) == [Pong(payload=b"hb")]


def test_close_frame_is_answered_and_refused():
    client, server = upgraded()
    reply, failed = client.receive(server.send(CloseConnection(code=1001, reason="going away")))
    assert isinstance(reply, Reply)
    assert failed == Failed("refused", "WebSocket closed by the peer (1001 going away)")
    server.receive_data(reply.data)
    assert [type(e) for e in server.events()] == [CloseConnection]
    assert client.close() == b""  # already closed: no second close frame


def test_eof_is_refused_and_close_sends_a_close_frame_while_open():
    client, server = upgraded()
    server.receive_data(client.close())
    (event,) = list(server.events())
    assert isinstance(event, CloseConnection) and event.code == 1000
    client2, _ = upgraded()
    (got,) = client2.receive(b"")
    assert got == Failed("refused", "connection closed by the peer")


def test_frame_is_one_masked_text_message_per_sip_message():
    client, server = upgraded()
    server.receive_data(client.frame(RESPONSE.encode()))
    (event,) = list(server.events())
    assert isinstance(event, TextMessage) and event.data == RESPONSE and event.message_finished


def test_sent_by_is_a_random_invalid_host():
    a, b = WsClient("h", 80, secure=False), WsClient("h", 80, secure=False)
    assert a.sent_by_host.endswith(".invalid") and a.sent_by_host != b.sent_by_host


# -- URIs, specs and targets --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "want"),
    [("sip:127.0.0.1;transport=ws", "ws:127.0.0.1:80"),
     ("sip:127.0.0.1;transport=wss", "wss:127.0.0.1:443"),
     ("sips:127.0.0.1;transport=ws", "wss:127.0.0.1:443"),  # RFC 7118 §5.2
     ("sip:[::1]:5065;transport=wss", "wss:[::1]:5065")],
)  # fmt: skip
def test_literal_targets_and_default_ports(uri, want):
    target = literal_target(parse_uri(uri))
    assert target is not None and str(target) == want


def test_spec_accepts_ws_transports_and_checks_ws_options():
    spec = SipProbeSpec(uri="sip:127.0.0.1:5066", transport="WS", ws_path="/ws")
    assert spec.parsed_uri.transport == "ws" and spec.ws_options == WsOptions("/ws")
    for transport in ("ws", "wss"):  # with sips, ws means WSS (RFC 7118 §5.2)
        spec = SipProbeSpec(uri="sips:127.0.0.1:5065", transport=transport)
        assert str(literal_target(spec.next_hop)) == "wss:127.0.0.1:5065"
    with pytest.raises(ValueError, match="tls or wss"):
        SipProbeSpec(uri="sips:127.0.0.1:5065", transport="tcp")
    with pytest.raises(ValueError, match="ws_path"):
        SipProbeSpec(uri="sip:127.0.0.1;transport=ws", ws_path="ws")
    with pytest.raises(ValueError, match="ws_path"):
        SipProbeSpec(uri="sip:127.0.0.1;transport=ws", ws_path="/a b")
    with pytest.raises(ValueError, match="ws_origin"):
        SipProbeSpec(uri="sip:127.0.0.1;transport=ws", ws_origin="x\r\nEvil: 1")
    with pytest.raises(ValueError, match="want udp, tcp, tls, ws, wss"):
        SipProbeSpec(uri="sip:127.0.0.1", transport="sctp")
