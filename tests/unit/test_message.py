"""SIP message parse/build (RFC 3261 §7, §25): captures, edge cases, hostile bytes."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwatch.errors import SipParseError
from sipwatch.sip.message import (
    MAX_MESSAGE_SIZE,
    Request,
    Response,
    StreamFramer,
    parse_message,
    parse_via,
    split_commas,
)

DATA = Path(__file__).parent.parent / "data"
CAPTURES = sorted(DATA.glob("*.sip"))

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc;rport=40000;received=127.0.0.1\r\n"
    b"From: <sip:sipwatch@127.0.0.1>;tag=1\r\n"
    b"To: <sip:127.0.0.1>;tag=2\r\n"
    b"Call-ID: abc\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_there_are_real_captures():
    assert len(CAPTURES) >= 5, "tests/data must hold captures from Kamailio and sipp"


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_captures_round_trip(path: Path):
    raw = path.read_bytes()
    message = parse_message(raw)
    again = parse_message(message.to_bytes())
    assert again == message
    assert message.top_via.branch
    if b"\r\n " not in raw and b"\r\n\t" not in raw:
        # No folding: byte-exact but for the spacing around each header's colon.
        head, sep, body = raw.partition(b"\r\n\r\n")
        head = re.sub(rb"(?m)^([!-9;-~]+)[ \t]*:[ \t]*", rb"\1: ", head)
        assert message.to_bytes() == head + sep + body


def test_status_line_and_fields():
    m = parse_message(OK)
    assert isinstance(m, Response)
    assert (m.status_code, m.reason) == (200, "OK")
    assert m.cseq == (1, "OPTIONS")
    assert m.top_via.param("rport") == "40000"
    assert m.top_via.param("received") == "127.0.0.1"


def test_compact_forms_and_case_insensitive_names():
    raw = (
        b"SIP/2.0 486 Busy Here\r\nv: SIP/2.0/TCP h:5060;branch=z9hG4bK1\r\n"
        b"f: <sip:a@b>;tag=1\r\nt: <sip:a@b>\r\ni: x\r\ncseq: 7 REGISTER\r\n"
        b"m: <sip:a@1.2.3.4>;expires=60\r\nl: 0\r\n\r\n"
    )
    m = parse_message(raw)
    assert m.header("Contact") == "<sip:a@1.2.3.4>;expires=60"
    assert m.header("call-id") == "x" and m.header("CALL-ID") == "x"
    assert m.cseq == (7, "REGISTER")


def test_several_via_values_comma_and_lines():
    raw = OK.replace(
        b"Via:",
        b"Via: SIP/2.0/UDP p1:5060;branch=z9hG4bKp1,\r\n SIP/2.0/TCP "
        b"[2001:db8::1]:5070;branch=z9hG4bKp2\r\nVia:",
        1,
    )
    vias = parse_message(raw).vias
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "p1", 5060),
        ("TCP", "2001:db8::1", 5070),
        ("UDP", "127.0.0.1", 40000),
    ]


def test_header_folding_is_joined():
    raw = OK.replace(b"Call-ID: abc", b"Call-ID: abc\r\nSubject: one\r\n\t two")
    assert parse_message(raw).header("Subject") == "one two"


def test_content_length_cuts_datagram_and_short_body_is_error():
    raw = OK.replace(b"Content-Length: 0", b"Content-Length: 4") + b"bodyEXTRA"
    assert parse_message(raw).body == b"body"
    with pytest.raises(SipParseError, match="Content-Length"):
        parse_message(OK.replace(b"Content-Length: 0", b"Content-Length: 10"))


def test_missing_content_length_on_datagram_takes_the_rest():
    raw = OK.replace(b"Content-Length: 0\r\n", b"") + b"xyz"
    assert parse_message(raw).body == b"xyz"


def test_auth_header_commas_are_not_split():
    raw = OK.replace(b"SIP/2.0 200 OK", b"SIP/2.0 401 Unauthorized").replace(
        b"Call-ID",
        b'WWW-Authenticate: Digest realm="a,b", nonce="n", qop="auth,auth-int"\r\nCall-ID',
    )
    assert parse_message(raw).header_all("WWW-Authenticate") == [
        'Digest realm="a,b", nonce="n", qop="auth,auth-int"'
    ]


def test_split_commas_respects_quotes_and_brackets():
    assert split_commas('"a, b" <sip:x@y;p=1,2>, <sip:z>') == ['"a, b" <sip:x@y;p=1,2>', "<sip:z>"]


def test_retry_after_with_comment_and_params():
    raw = OK.replace(b"200 OK", b"503 Service Unavailable").replace(
        b"Call-ID", b"Retry-After: 18000 (in maintenance);duration=3600\r\nCall-ID"
    )
    m = parse_message(raw)
    assert isinstance(m, Response) and m.retry_after_s() == 18000


def test_request_parse():
    raw = (
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: q\r\n"
        b"CSeq: 2 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    m = parse_message(raw)
    assert isinstance(m, Request) and (m.method, m.uri) == ("OPTIONS", "sip:127.0.0.1")


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"", "empty"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "request line"),
        (OK.replace(b"SIP/2.0 200", b"SIP/3.0 200"), "version"),
        (OK.replace(b"200 OK", b"999 Huh"), "out of range"),
        (OK.replace(b"200 OK", b"20 OK"), "status line"),
        (OK.replace(b"CSeq: 1 OPTIONS\r\n", b""), "CSeq"),
        (OK.replace(b"Via: ", b"Via: garbage"), "Via"),
        (OK.replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"), "CSeq"),
        (OK.replace(b"CSeq: 1 OPTIONS", b"CSeq: 4294967296 OPTIONS"), "CSeq"),
        (OK.replace(b"Content-Length: 0", b"Content-Length: -1"), "Content-Length"),
        (OK.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 5"), "Content-Length"),
        (OK.replace(b"Call-ID: abc", b"Call ID abc"), "header line"),
        (OK[:-4], "empty line"),
        (OK.replace(b"abc", b"a\x00c"), "NUL"),
        (b"SIP/2.0 200 OK\r\n" + b"X-A: b\r\n" * 300 + b"\r\n", "header fields"),
    ],
)
def test_malformed_inputs_raise_parse_error_naming_the_problem(raw: bytes, needle: str):
    with pytest.raises(SipParseError, match=needle):
        parse_message(raw)


def test_size_limit():
    with pytest.raises(SipParseError, match="limit"):
        parse_message(OK + b"x" * MAX_MESSAGE_SIZE)


def test_via_parse_ipv6_and_params():
    v = parse_via("SIP/2.0/TLS [::1]:5061;branch=z9hG4bKq;rport")
    assert (v.transport, v.host, v.port, v.branch, v.param("rport")) == (
        "TLS",
        "::1",
        5061,
        "z9hG4bKq",
        "",
    )


def test_stream_framer_split_reads_keepalives_and_pipelining():
    framer = StreamFramer()
    stream = b"\r\n\r\n" + OK + b"\r\n" + OK.replace(b"abc", b"def")
    got = []
    for i in range(0, len(stream), 7):  # arbitrary TCP segment boundaries
        got += framer.feed(stream[i : i + 7])
    assert [m.call_id for m in got] == ["abc", "def"]
    assert framer.keepalives == 2 and framer.buffered == 0


def test_stream_framer_needs_content_length():
    with pytest.raises(SipParseError, match="mandatory"):
        StreamFramer().feed(OK.replace(b"Content-Length: 0\r\n", b""))


def test_stream_framer_bounds_a_headless_flood():
    framer = StreamFramer(max_size=1000)
    with pytest.raises(SipParseError, match="boundary"):
        framer.feed(b"A" * 1001)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_parser_raises_only_its_own_error_on_arbitrary_bytes(data: bytes):
    with contextlib.suppress(SipParseError):
        parse_message(data)


_LINE = st.sampled_from(
    [
        b"SIP/2.0 200 OK",
        b"OPTIONS sip:a SIP/2.0",
        b"Via: SIP/2.0/UDP h;branch=z9hG4bKx",
        b"v: SIP/2.0/TCP [::1]:1",
        b"CSeq: 1 OPTIONS",
        b"CSeq: x",
        b"From: <sip:a>;tag=1",
        b"To: <sip:b>",
        b"Call-ID: c",
        b"i: c",
        b"Content-Length: 3",
        b"l: 99999999",
        b" folded",
        b"\tx",
        b"",
        b":",
        b"X: \xff\xfe",
        b"Retry-After: 5 (x)",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, max_size=12), st.binary(max_size=20))
def test_parser_and_framer_on_plausible_garbage(lines: list[bytes], tail: bytes):
    data = b"\r\n".join(lines) + b"\r\n\r\n" + tail
    for run in (lambda: parse_message(data), lambda: StreamFramer().feed(data)):
        with contextlib.suppress(SipParseError):
            run()
