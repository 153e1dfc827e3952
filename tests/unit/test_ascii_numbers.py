"""Numbers from foreign text are ASCII decimal with bounds (issue 19; RFC 3261 §25.1:
DIGIT = %x30-39). `str.isdigit()`, the regex `\\d` and `int()` accept superscripts,
fullwidth and Arabic-Indic digits; nothing that reads a peer's bytes, a URI or a config value
may. Non-ASCII digits are written as escapes here so the file says which one is meant."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwatch.errors import SipParseError, SipUriError
from sipwatch.numbers import ascii_int
from sipwatch.probes._sip import parse_code_ranges
from sipwatch.sip.message import (
    Response,
    StreamFramer,
    contact_expires_s,
    parse_message,
    parse_via,
)
from sipwatch.sip.uri import parse_uri

SUP1, SUP2, SUP3, SUP0 = "\u00b9", "\u00b2", "\u00b3", "\u2070"  # superscript 1 2 3 0
SUP6 = "\u2076"
FW200 = "\uff12\uff10\uff10"  # fullwidth 200
AR1 = "\u0661"  # Arabic-Indic digit one

OK = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc;rport=40000;received=127.0.0.1\r\n"
    "From: <sip:sipwatch@127.0.0.1>;tag=1\r\n"
    "To: <sip:127.0.0.1>;tag=2\r\n"
    "Call-ID: abc\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def msg(text: str) -> bytes:
    return text.encode("utf-8")


def with_header(line: str, status: str = "200 OK") -> bytes:
    return msg(OK.replace("200 OK", status).replace("Call-ID:", f"{line}\r\nCall-ID:"))


# --- the helper --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, low, high, want",
    [("0", 0, 9, 0), ("5060", 1, 65535, 5060), ("0005060", 1, 65535, 5060), ("699", 100, 699, 699)],
)
def test_helper_reads_ascii_decimal(text, low, high, want):
    assert ascii_int(text, "port", low=low, high=high) == want


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "not an ASCII decimal"),
        (SUP2, "not an ASCII decimal"),
        ("\uff15\uff10\uff16\uff10", "not an ASCII decimal"),
        (AR1, "not an ASCII decimal"),
        ("-1", "not an ASCII decimal"),
        ("+1", "not an ASCII decimal"),
        (" 1", "not an ASCII decimal"),
        ("1_000", "not an ASCII decimal"),
        ("1.0", "not an ASCII decimal"),
        ("0x10", "not an ASCII decimal"),
        ("65536", "out of range 1-65535"),
        ("0", "out of range 1-65535"),
        ("9" * 5000, "out of range 1-65535"),  # int() alone would refuse > 4300 digits
    ],
)
def test_helper_refuses_everything_else_naming_the_field(text, why):
    with pytest.raises(SipParseError, match=why) as err:
        ascii_int(text, "Via port", low=1, high=65535, error=SipParseError)
    assert str(err.value).startswith("Via port")
    assert len(str(err.value)) < 200  # a hostile value is cut short in the message


def test_helper_exact_digit_count():
    assert ascii_int("200", "status code", low=100, high=699, digits=3) == 200
    with pytest.raises(ValueError, match="3 digits"):
        ascii_int("0200", "status code", low=100, high=699, digits=3)


def test_helper_default_error_is_value_error_for_local_text():
    with pytest.raises(ValueError, match="pidfile"):
        ascii_int(SUP1, "pidfile", low=1, high=10)


# --- the rows of issue 19, on the parser --------------------------------------------------------


@pytest.mark.parametrize(
    "raw, field",
    [
        (msg(OK.replace("Content-Length: 0", f"Content-Length: {SUP2}")), "Content-Length"),
        (msg(OK.replace("CSeq: 1 ", f"CSeq: {SUP1} ")), "CSeq"),
        (msg(OK.replace("200 OK", f"{FW200} OK")), "status code"),
        (msg(OK.replace("rport=40000", f"rport=5{SUP0}60")), "rport"),
        # siblings: int() accepts these, so isdigit() + int() let them through as numbers
        (msg(OK.replace("Content-Length: 0", "Content-Length: \u0660")), "Content-Length"),
        (msg(OK.replace("CSeq: 1 ", "CSeq: \uff11 ")), "CSeq"),
        (msg(OK.replace("200 OK", "\u0662\u0660\u0660 OK")), "status code"),
        (msg(OK.replace("127.0.0.1:40000", "127.0.0.1:\uff14\uff10\uff10\uff10\uff10")), "port"),
        (msg(OK.replace("127.0.0.1:40000", "127.0.0.1:" + "9" * 5000)), "port"),
        (msg(OK.replace("SIP/2.0 200", "SIP/\uff12.0 200")), "status line"),
        (msg(OK.replace(";received", ";ttl=\uff11;received")), "ttl"),
    ],
)
def test_unicode_digits_in_a_response_are_parse_errors(raw: bytes, field: str):
    with pytest.raises(SipParseError, match=field):
        parse_message(raw)


@pytest.mark.parametrize("value", [SUP2, AR1, "\uff11"])
def test_unicode_content_length_on_a_stream_is_a_parse_error(value: str):
    raw = msg(OK.replace("Content-Length: 0", f"Content-Length: {value}"))
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(raw)


@pytest.mark.parametrize("value", [SUP3, f"1{SUP3}", "\uff13\uff10", "9" * 400])
def test_unreadable_retry_after_on_a_503_is_a_parse_error(value: str):
    m = parse_message(with_header(f"Retry-After: {value}", "503 Service Unavailable"))
    assert isinstance(m, Response)
    with pytest.raises(SipParseError, match="Retry-After"):
        m.retry_after_s()


def test_retry_after_ascii_with_comment_and_params_still_reads():
    m = parse_message(with_header("Retry-After: 120 (maint) ;duration=60", "503 Busy"))
    assert isinstance(m, Response) and m.retry_after_s() == 120


@pytest.mark.parametrize("value", [f"{SUP6}0", "\uff16\uff10", "-1", "sixty", "4294967296"])
def test_unreadable_expires_header_is_a_parse_error(value: str):
    m = parse_message(with_header(f"Expires: {value}"))
    with pytest.raises(SipParseError, match="Expires"):
        m.expires_s()


def test_expires_header_reads_ascii_and_absent_is_none():
    assert parse_message(with_header("Expires: 3600")).expires_s() == 3600
    assert parse_message(msg(OK)).expires_s() is None


@pytest.mark.parametrize(
    "value, want",
    [
        ("<sip:a@127.0.0.1:5060>;expires=60", 60),
        ("<sip:a@127.0.0.1:5060;transport=tcp>;q=0.5;EXPIRES = 0", 0),
        ("sip:a@127.0.0.1;expires=00", 0),
        ("<sip:a@127.0.0.1>", None),
    ],
)
def test_contact_expires_reads_ascii(value: str, want: int | None):
    assert contact_expires_s(value) == want


@pytest.mark.parametrize("value", [f"{SUP6}0", "\u0666\u0660", "", "4294967296"])
def test_contact_expires_unicode_is_a_parse_error(value: str):
    with pytest.raises(SipParseError, match="expires"):
        contact_expires_s(f"<sip:a@127.0.0.1:5060>;expires={value}")


@pytest.mark.parametrize(
    "text", ["sip:127.0.0.1:\uff15\uff10\uff16\uff10", f"sip:h:{SUP2}", "sip:h:\u0665060"]
)
def test_unicode_port_in_a_uri_is_a_uri_error_naming_the_port(text: str):
    with pytest.raises(SipUriError, match="port"):
        parse_uri(text)


@pytest.mark.parametrize(
    "codes", [(FW200,), (f"{FW200}-299",), ("200-\uff12\uff19\uff19",), ("2" + SUP0 * 2,)]
)
def test_unicode_alive_codes_are_refused(codes: tuple[str, ...]):
    with pytest.raises(ValueError, match="status"):
        parse_code_ranges(codes)


# --- property tests: every numeric field, Unicode digits drawn from Nd and No --------------------

_FOREIGN = st.characters(categories=["Nd", "No"], exclude_characters="0123456789")
_ASCII = st.sampled_from("0123456789")


@st.composite
def foreign_numbers(draw: st.DrawFn) -> str:
    """1-8 digit characters, at least one of them not ASCII, ASCII digits mixed in."""
    chars = draw(st.lists(st.one_of(_ASCII, _FOREIGN), max_size=7))
    chars.insert(draw(st.integers(0, len(chars))), draw(_FOREIGN))
    return "".join(chars)


def _status(t: str) -> object:
    return parse_message(msg(OK.replace("200 OK", f"{t} OK")))


def _version(t: str) -> object:
    return parse_message(msg(OK.replace("SIP/2.0 200", f"SIP/{t}.0 200")))


def _cseq(t: str) -> object:
    return parse_message(msg(OK.replace("CSeq: 1 ", f"CSeq: {t} ")))


def _length(t: str) -> object:
    return parse_message(msg(OK.replace("Content-Length: 0", f"Content-Length: {t}")))


def _length_stream(t: str) -> object:
    return StreamFramer().feed(msg(OK.replace("Content-Length: 0", f"Content-Length: {t}")))


def _via_port(t: str) -> object:
    return parse_via(f"SIP/2.0/UDP 127.0.0.1:{t};branch=z9hG4bKx")


def _rport(t: str) -> object:
    return parse_message(msg(OK.replace("rport=40000", f"rport={t}")))


def _ttl(t: str) -> object:
    return parse_via(f"SIP/2.0/UDP 127.0.0.1;ttl={t};branch=z9hG4bKx")


def _retry_after(t: str) -> object:
    m = parse_message(with_header(f"Retry-After: {t} (x);duration=5", "503 Unavailable"))
    assert isinstance(m, Response)
    return m.retry_after_s()


def _expires(t: str) -> object:
    return parse_message(with_header(f"Expires: {t}")).expires_s()


def _contact_expires(t: str) -> object:
    return contact_expires_s(f"<sip:a@127.0.0.1>;expires={t}")


SIP_FIELDS = {
    "status_code": _status,
    "sip_version": _version,
    "cseq": _cseq,
    "content_length": _length,
    "content_length_stream": _length_stream,
    "via_port": _via_port,
    "rport": _rport,
    "ttl": _ttl,
    "retry_after": _retry_after,
    "expires": _expires,
    "contact_expires": _contact_expires,
}


@pytest.mark.parametrize("read", SIP_FIELDS.values(), ids=SIP_FIELDS.keys())
@settings(max_examples=150, deadline=None)
@given(number=foreign_numbers())
def test_no_unicode_digit_is_ever_a_sip_number(read, number: str):
    with pytest.raises(SipParseError):  # and nothing else: any other exception fails the test
        read(number)


@pytest.mark.parametrize("read", SIP_FIELDS.values(), ids=SIP_FIELDS.keys())
@settings(max_examples=100, deadline=None)
@given(text=st.text(st.one_of(_ASCII, _FOREIGN, st.sampled_from(" ;()-+._x")), max_size=10))
def test_only_parse_errors_escape_for_any_digitish_text(read, text: str):
    with contextlib.suppress(SipParseError):
        read(text)


@settings(max_examples=150, deadline=None)
@given(number=foreign_numbers())
def test_no_unicode_digit_is_ever_a_uri_port(number: str):
    with pytest.raises(SipUriError):
        parse_uri(f"sip:127.0.0.1:{number}")


@settings(max_examples=150, deadline=None)
@given(number=foreign_numbers(), form=st.sampled_from(["{}", "{}-699", "100-{}"]))
def test_no_unicode_digit_is_ever_an_alive_code(number: str, form: str):
    with pytest.raises(ValueError):
        parse_code_ranges((form.format(number),))


@settings(max_examples=150, deadline=None)
@given(number=foreign_numbers(), high=st.integers(0, 2**32))
def test_helper_never_accepts_a_unicode_digit(number: str, high: int):
    with pytest.raises(SipParseError):
        ascii_int(number, "n", low=0, high=high, error=SipParseError)


@settings(max_examples=200, deadline=None)
@given(value=st.integers(0, 2**31 - 1), zeros=st.integers(0, 3))
def test_ascii_numbers_in_range_still_read(value: int, zeros: int):
    text = "0" * zeros + str(value)
    assert _cseq(text).cseq[0] == value  # type: ignore[attr-defined]
    assert ascii_int(text, "n", low=0, high=2**31 - 1) == value
    port = value % 65535 + 1
    assert parse_via(f"SIP/2.0/UDP h:{port};rport={port};branch=z9hG4bKx").port == port
    assert parse_uri(f"sip:h:{port}").port == port
    assert _retry_after(text) == value
    assert _expires(text) == value and _contact_expires(text) == value
