"""SIP URI parsing (RFC 3261 §19.1)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwatch.errors import SipUriError
from sipwatch.sip.uri import parse_uri


@pytest.mark.parametrize(
    "text, host, user, port, transport, scheme",
    [
        ("sip:monitor@127.0.0.1:5060;transport=TCP", "127.0.0.1", "monitor", 5060, "tcp", "sip"),
        ("sips:[2001:db8::1]:5061", "2001:db8::1", None, 5061, None, "sips"),
        ("SIP:PBX.Example.COM", "pbx.example.com", None, None, None, "sip"),
        (
            "sip:100@pbx.example.com;transport=udp;lr?Subject=x",
            "pbx.example.com",
            "100",
            None,
            "udp",
            "sip",
        ),
    ],
)
def test_parse(text, host, user, port, transport, scheme):
    uri = parse_uri(text)
    assert (uri.host, uri.user, uri.port, uri.transport, uri.scheme) == (
        host,
        user,
        port,
        transport,
        scheme,
    )
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    "text, needle",
    [
        ("http://x", "scheme"),
        ("pbx.example.com", "scheme"),
        ("sip:user:secret@host", "password"),
        ("sip:host:0", "port"),
        ("sip:host:70000", "port"),
        ("sip:[::1", "IPv6"),
        ("sip:[zz::1]", "IPv6"),
        ("sip:bad_host!", "host"),
        ("sip:h;transport=sctp2", "transport"),
        ("sip:", "host"),
    ],
)
def test_errors_name_the_problem(text, needle):
    with pytest.raises(SipUriError, match=needle):
        parse_uri(text)


def test_literal_detection():
    assert parse_uri("sip:10.0.0.1").is_ip_literal
    assert parse_uri("sip:[::1]").is_ip_literal
    assert not parse_uri("sip:pbx.example.com").is_ip_literal


@given(st.text(max_size=80))
def test_only_uri_errors_on_arbitrary_text(text):
    with contextlib.suppress(SipUriError):
        parse_uri(text)
