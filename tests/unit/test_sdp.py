"""SDP offer/answer subset (RFC 4566, RFC 3264): the offer's text and reading answers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwatch.sip.sdp import (
    AudioAnswer,
    SdpError,
    StreamRejected,
    build_offer,
    parse_answer,
)

SIPP_ANSWER = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)


def test_offer_lines():
    offer = build_offer("192.0.2.5", 40002).decode()
    assert offer.endswith("\r\n") and "\n" not in offer.replace("\r\n", "")
    lines = offer.split("\r\n")
    assert lines[0] == "v=0"
    assert "c=IN IP4 192.0.2.5" in lines
    assert "m=audio 40002 RTP/AVP 0 101" in lines
    for line in (
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=sendrecv",
    ):
        assert line in lines
    assert "c=IN IP6 2001:db8::1" in build_offer("2001:db8::1", 5004).decode()
    with pytest.raises(ValueError):
        build_offer("pbx.example", 5004)
    with pytest.raises(ValueError):
        build_offer("127.0.0.1", 0)


def test_our_offer_parses_as_an_answer():
    answer = parse_answer(build_offer("2001:db8::1", 5004))
    assert answer == AudioAnswer(
        "2001:db8::1",
        5004,
        (0, 101),
        "sendrecv",
        ((0, "PCMU/8000"), (101, "telephone-event/8000")),
    )


def test_sipp_answer():
    answer = parse_answer(SIPP_ANSWER)
    assert (answer.address, answer.port, answer.payloads) == ("127.0.0.1", 6000, (0, 101))
    assert answer.accepts_pcmu and answer.sends and answer.receives
    assert answer.encoding(101) == "telephone-event/8000" and answer.encoding(8) is None


def test_media_level_connection_and_direction_win():
    body = (
        b"v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=sendonly\n"
        b"m=video 7000 RTP/AVP 96\nc=IN IP4 10.9.9.9\n"
        b"m=audio 7002 RTP/AVP 8\nc=IN IP4 10.0.0.2\na=recvonly\n"
    )
    answer = parse_answer(body)
    assert (answer.address, answer.port, answer.direction) == ("10.0.0.2", 7002, "recvonly")
    assert not answer.accepts_pcmu and not answer.sends


def test_session_direction_applies_when_the_stream_has_none():
    body = SIPP_ANSWER.replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n")
    assert parse_answer(body).direction == "inactive"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "no SDP"),
        (b"   \r\n", "no SDP"),
        (b"<html>oops</html>", "v=0"),
        (b"\xff\xfe", "UTF-8"),
        (SIPP_ANSWER.replace(b"c=IN IP4 127.0.0.1\r\n", b""), "no connection"),
        (SIPP_ANSWER.replace(b"127.0.0.1\r\nt", b"pbx.example\r\nt"), "not an IP literal"),
        (SIPP_ANSWER.replace(b"IN IP4 127.0.0.1\r\nt", b"IN IP4 999.1.1.1\r\nt"), "IP literal"),
        (SIPP_ANSWER.replace(b"IN IP4 127.0.0.1\r\nt", b"IN IP4 0.0.0.0\r\nt"), "hold"),
        (SIPP_ANSWER.replace(b"IN IP4 127.0.0.1\r\nt", b"IN IP4 239.1.1.1\r\nt"), "multicast"),
        (SIPP_ANSWER.replace(b"IN IP4 127.0.0.1\r\nt", b"IN IP6 127.0.0.1\r\nt"), "not IP6"),
        (SIPP_ANSWER.replace(b"IN IP4 127.0.0.1\r\nt", b"IN IP4\r\nt"), "malformed"),
        (SIPP_ANSWER.replace(b"6000", b"70000"), "out of range"),
        (SIPP_ANSWER.replace(b"6000", "\uff16\uff10\uff10\uff10".encode()), "ASCII"),
        (SIPP_ANSWER.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 x"), "payload type"),
        (SIPP_ANSWER.replace(b"RTP/AVP", b"RTP/SAVP"), "RTP/SAVP"),
        (SIPP_ANSWER.replace(b"m=audio", b"m=video"), "no audio"),
        (SIPP_ANSWER.replace(b"m=audio 6000 RTP/AVP 0 101", b"m=audio 6000"), "malformed m="),
        (SIPP_ANSWER + b"garbage line\r\n", "not an SDP line"),
    ],
)
def test_garbage_is_an_sdp_error(body, why):
    with pytest.raises(SdpError, match=why):
        parse_answer(body)


def test_port_zero_is_a_rejected_stream():
    with pytest.raises(StreamRejected, match="port 0"):
        parse_answer(SIPP_ANSWER.replace(b"6000", b"0"))


@given(st.binary(max_size=600))
def test_parse_answer_raises_only_sdp_error_on_bytes(data):
    with contextlib.suppress(SdpError):
        parse_answer(data)


_SDP_LINE = st.one_of(
    st.sampled_from(
        [
            "c=IN IP4 127.0.0.1",
            "c=IN IP6 ::1",
            "c=IN IP4 ::1",
            "c=IN IP4",
            "m=audio 6000 RTP/AVP 0",
            "m=audio 0 RTP/AVP 0",
            "m=audio 6000/2 RTP/AVP 0 101",
            "m=audio x RTP/AVP",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:zz",
            "a=sendonly",
            "t=0 0",
        ]
    ),
    st.text(max_size=40).map(lambda s: "a=" + s),
    st.from_regex(r"[a-z]=[ -~]{0,30}", fullmatch=True),
)


@given(st.lists(_SDP_LINE, max_size=12))
def test_parse_answer_raises_only_sdp_error_on_near_sdp(lines):
    body = "\r\n".join(["v=0", *lines]).encode("utf-8", "surrogatepass")
    try:
        answer = parse_answer(body)
    except SdpError:
        return
    assert 0 < answer.port < 65536 and all(0 <= p <= 127 for p in answer.payloads)
