"""Tests for sipwatch.sip.digest: published vectors, header formatting, challenge parsing.

Expected digests come from the RFCs' published examples or are computed here with hashlib
straight from the RFC formulas, never from the module's own helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwatch.errors import DigestError
from sipwatch.sip.digest import (
    ALGORITHMS,
    Challenge,
    Credentials,
    authorization,
    choose_challenge,
    parse_auth_params,
    parse_challenge,
    response_digest,
)


def _has_hash(name: str) -> bool:
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


needs_sha512_256 = pytest.mark.skipif(
    not _has_hash("sha512_256"), reason="this Python's OpenSSL provides no SHA-512/256"
)


def h(hashname: str, data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.new(hashname, raw).hexdigest()


def params_of(header: str) -> dict[str, str]:
    scheme, params = parse_auth_params(header)
    assert scheme == "Digest"
    return params


def raw_param(header: str, name: str) -> str:
    """The parameter exactly as written (quotes included), found without the module's parser."""
    match = re.search(rf'(?:^Digest |, ){re.escape(name)}=("(?:[^"\\]|\\.)*"|[^,]*)(?:,|$)', header)
    assert match is not None, f"{name} missing from {header!r}"
    return match.group(1)


# --- published vectors ---------------------------------------------------------------------

# RFC 7616 §3.9.1
MUFASA = Credentials("Mufasa", "Circle of Life")
RFC7616_REALM = "http-auth@example.org"
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_vectors(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(
        f'Digest realm="{RFC7616_REALM}", qop="auth, auth-int", algorithm={algorithm},'
        f' nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    header = authorization(challenge, MUFASA, "GET", "/dir/index.html", cnonce=RFC7616_CNONCE)
    params = params_of(header)
    assert params["response"] == expected
    assert params["username"] == "Mufasa"
    assert params["qop"] == "auth"
    assert params["algorithm"] == algorithm
    assert params["opaque"] == RFC7616_OPAQUE
    assert params["cnonce"] == RFC7616_CNONCE
    assert (
        response_digest(
            algorithm=algorithm,
            username="Mufasa",
            password="Circle of Life",
            realm=RFC7616_REALM,
            nonce=RFC7616_NONCE,
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc=1,
            cnonce=RFC7616_CNONCE,
        )
        == expected
    )


def test_rfc2617_example_vector() -> None:
    # RFC 2617 §3.5: note the capital O in "Circle Of Life".
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int",'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = authorization(
        challenge,
        Credentials("Mufasa", "Circle Of Life"),
        "GET",
        "/dir/index.html",
        cnonce="0a4f113b",
    )
    params = params_of(header)
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert raw_param(header, "nc") == "00000001"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


@needs_sha512_256
def test_rfc7616_userhash_vector_with_erratum_4897() -> None:
    # RFC 7616 §3.9.2, with the username hash and response as corrected by erratum 4897 (the
    # RFC's printed values came from a pre-standard SHA-512/256).
    challenge = parse_challenge(
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256,'
        ' nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",'
        ' opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )
    assert challenge.userhash
    header = authorization(
        challenge,
        Credentials("J\u00e4s\u00f8n Doe", "Secret, or not?"),
        "GET",
        "/doe.json",
        cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )
    params = params_of(header)
    assert params["username"] == "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    assert params["response"] == "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
    assert raw_param(header, "userhash") == "true"
    assert raw_param(header, "algorithm") == "SHA-512-256"


# --- independently computed variants -------------------------------------------------------

HASHLIB = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


@pytest.mark.parametrize(
    "algorithm", ["MD5", "SHA-256", pytest.param("SHA-512-256", marks=needs_sha512_256)]
)
def test_rfc2069_form_when_no_qop_offered(algorithm: str) -> None:
    hn = HASHLIB[algorithm]
    challenge = parse_challenge(
        f'Digest realm="127.0.0.1", nonce="ZmFrZS1ub25jZQ==", algorithm={algorithm}'
    )
    creds = Credentials("alice", "wonderland")
    # a cnonce passed anyway must not be sent: RFC 2617 §3.2.2 forbids it without qop
    header = authorization(challenge, creds, "OPTIONS", "sip:127.0.0.1", cnonce="ignored")
    ha1 = h(hn, "alice:127.0.0.1:wonderland")
    ha2 = h(hn, "OPTIONS:sip:127.0.0.1")
    params = params_of(header)
    assert params["response"] == h(hn, f"{ha1}:ZmFrZS1ub25jZQ==:{ha2}")
    assert not {"cnonce", "nc", "qop"} & params.keys()
    assert params["algorithm"] == algorithm


@pytest.mark.parametrize(
    "algorithm",
    ["MD5-sess", "SHA-256-sess", pytest.param("SHA-512-256-sess", marks=needs_sha512_256)],
)
def test_sess_variants(algorithm: str) -> None:
    hn = HASHLIB[algorithm.removesuffix("-sess")]
    challenge = Challenge(realm="sipwatch.test", nonce="n0nce", algorithm=algorithm, qop=("auth",))
    header = authorization(
        challenge, Credentials("bob", "builder"), "REGISTER", "sip:sipwatch.test", nc=3, cnonce="c1"
    )
    # RFC 2617 §3.2.2.2: HA1 = H(H(user:realm:pass):nonce:cnonce)
    ha1 = h(hn, f"{h(hn, 'bob:sipwatch.test:builder')}:n0nce:c1")
    ha2 = h(hn, "REGISTER:sip:sipwatch.test")
    expected = h(hn, f"{ha1}:n0nce:00000003:c1:auth:{ha2}")
    assert params_of(header)["response"] == expected
    assert raw_param(header, "algorithm") == algorithm


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_auth_int_hashes_the_body_when_only_auth_int_is_offered(algorithm: str) -> None:
    hn = HASHLIB[algorithm]
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    challenge = Challenge(realm="r", nonce="n", algorithm=algorithm, qop=("auth-int",))
    header = authorization(
        challenge, Credentials("u", "p"), "INVITE", "sip:x@r", cnonce="c", body=body
    )
    ha1 = h(hn, "u:r:p")
    ha2 = h(hn, f"INVITE:sip:x@r:{h(hn, body)}")
    assert raw_param(header, "qop") == "auth-int"
    assert params_of(header)["response"] == h(hn, f"{ha1}:n:00000001:c:auth-int:{ha2}")
    other = authorization(challenge, Credentials("u", "p"), "INVITE", "sip:x@r", cnonce="c")
    assert params_of(other)["response"] != params_of(header)["response"]


def test_auth_is_preferred_over_auth_int() -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth-int", "auth"))
    assert raw_param(
        authorization(challenge, Credentials("u", "p"), "OPTIONS", "sip:r"), "qop"
    ) == ("auth")


def test_non_ascii_username_is_sent_verbatim_and_hashed_as_utf8() -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth",))
    header = authorization(
        challenge, Credentials("J\u00e4s\u00f8n", "p"), "OPTIONS", "sip:r", cnonce="c"
    )
    assert raw_param(header, "username") == '"J\u00e4s\u00f8n"'
    assert "username*" not in header
    ha1 = h("md5", "J\u00e4s\u00f8n:r:p".encode())
    ha2 = h("md5", "OPTIONS:sip:r")
    assert params_of(header)["response"] == h("md5", f"{ha1}:n:00000001:c:auth:{ha2}")


# --- formatting ----------------------------------------------------------------------------

CHALLENGE = Challenge(realm="sipwatch.test", nonce="abc", algorithm="SHA-256", qop=("auth",))
CREDS = Credentials("probe", "pa55-w0rd-XYZ")


@pytest.mark.parametrize(
    ("nc", "written"),
    [(1, "00000001"), (10, "0000000a"), (255, "000000ff"), (2**32 - 1, "ffffffff")],
)
def test_nc_is_eight_lowercase_hex_digits_unquoted(nc: int, written: str) -> None:
    header = authorization(CHALLENGE, CREDS, "OPTIONS", "sip:sipwatch.test", nc=nc)
    assert raw_param(header, "nc") == written


@pytest.mark.parametrize("nc", [0, -1, 2**32])
def test_nc_out_of_range_is_a_caller_error(nc: int) -> None:
    with pytest.raises(ValueError, match="nc"):
        authorization(CHALLENGE, CREDS, "OPTIONS", "sip:sipwatch.test", nc=nc)


def test_empty_cnonce_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="cnonce"):
        authorization(CHALLENGE, CREDS, "OPTIONS", "sip:sipwatch.test", cnonce="")


def test_tokens_unquoted_strings_quoted() -> None:
    header = authorization(CHALLENGE, CREDS, "OPTIONS", "sip:sipwatch.test", cnonce="deadbeef")
    assert header.startswith("Digest ")
    assert raw_param(header, "qop") == "auth"
    assert raw_param(header, "algorithm") == "SHA-256"
    assert raw_param(header, "cnonce") == '"deadbeef"'
    for name in ("username", "realm", "nonce", "uri", "response"):
        assert raw_param(header, name).startswith('"'), name
    assert "opaque" not in header
    assert "userhash" not in header


def test_cnonce_is_fresh_and_random_per_call() -> None:
    headers = [authorization(CHALLENGE, CREDS, "OPTIONS", "sip:sipwatch.test") for _ in range(5)]
    cnonces = {params_of(header)["cnonce"] for header in headers}
    assert len(cnonces) == 5
    assert all(re.fullmatch(r"[0-9a-f]{16}", cnonce) for cnonce in cnonces)
    assert len({params_of(header)["response"] for header in headers}) == 5


def test_opaque_is_echoed_unchanged() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", opaque="o\\"p/q=="')
    header = authorization(challenge, CREDS, "OPTIONS", "sip:r")
    assert raw_param(header, "opaque") == '"o\\"p/q=="'
    assert params_of(header)["opaque"] == 'o"p/q=='


def test_quoted_values_escape_quotes_and_backslashes() -> None:
    challenge = Challenge(realm='a"b\\c', nonce="n", qop=("auth",))
    header = authorization(challenge, Credentials('x"y\\', "p"), "OPTIONS", "sip:r", cnonce='c"')
    assert raw_param(header, "realm") == '"a\\"b\\\\c"'
    assert raw_param(header, "username") == '"x\\"y\\\\"'
    assert raw_param(header, "cnonce") == '"c\\""'
    # the hash is over the unescaped values (RFC 7616 §3.4.1 "unq(...)")
    ha1 = h("md5", 'x"y\\:a"b\\c:p')
    ha2 = h("md5", "OPTIONS:sip:r")
    assert params_of(header)["response"] == h("md5", f'{ha1}:n:00000001:c":auth:{ha2}')


@pytest.mark.parametrize(
    ("challenge", "creds", "uri"),
    [
        (Challenge(realm="r\r\nVia: evil", nonce="n"), CREDS, "sip:r"),
        (CHALLENGE, Credentials("probe\n", "p"), "sip:r"),
        (CHALLENGE, CREDS, "sip:r\r\nContact: <sip:evil>"),
    ],
)
def test_control_characters_are_refused_not_sent(
    challenge: Challenge, creds: Credentials, uri: str
) -> None:
    with pytest.raises(DigestError, match="control character"):
        authorization(challenge, creds, "OPTIONS", uri)


def test_password_is_never_shown() -> None:
    secret = CREDS.password
    assert secret not in repr(CREDS)
    assert secret not in str(CREDS)
    assert "probe" in repr(CREDS)
    assert secret not in str([CREDS, CHALLENGE])
    header = authorization(CHALLENGE, CREDS, "OPTIONS", "sip:sipwatch.test")
    assert secret not in header
    with pytest.raises(DigestError) as bad_uri:
        authorization(CHALLENGE, CREDS, "OPTIONS", "sip:x\r\n")
    assert secret not in str(bad_uri.value)
    unencodable = Credentials("probe", "pa55\ud800-XYZ")
    with pytest.raises(DigestError) as bad_password:
        authorization(CHALLENGE, unencodable, "OPTIONS", "sip:sipwatch.test")
    assert unencodable.password not in str(bad_password.value)
    assert "pa55" not in str(bad_password.value)


def test_proxy_challenge_is_answered_in_proxy_authorization() -> None:
    www = parse_challenge('Digest realm="r", nonce="n"')
    proxy = parse_challenge('Digest realm="r", nonce="n"', proxy=True)
    assert (www.proxy, proxy.proxy) == (False, True)
    assert www.authorization_header == "Authorization"
    assert proxy.authorization_header == "Proxy-Authorization"
    assert authorization(www, CREDS, "OPTIONS", "sip:r") == authorization(
        proxy, CREDS, "OPTIONS", "sip:r"
    )


# --- Challenge construction ----------------------------------------------------------------


def test_challenge_normalises_algorithm_and_qop() -> None:
    challenge = Challenge(realm="r", nonce="n", algorithm="sha-512-256-SESS", qop=("AUTH",))
    assert challenge.algorithm == "SHA-512-256-sess"
    assert challenge.qop == ("auth",)
    assert {
        c.algorithm for c in (Challenge("r", "n", a.upper(), ("auth",)) for a in ALGORITHMS)
    } == (ALGORITHMS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "SHA-1"}, "algorithm"),
        ({"nonce": ""}, "empty nonce"),
        ({"qop": ("auth-conf",)}, "qop"),
        ({"algorithm": "MD5-sess"}, "without qop"),
    ],
)
def test_challenge_refuses_what_cannot_be_answered(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"realm": "r", "nonce": "n", **kwargs}
    with pytest.raises(DigestError, match=message):
        Challenge(**fields)  # type: ignore[arg-type]


# --- parse_challenge -----------------------------------------------------------------------


def test_parses_kamailio_challenge_with_qop() -> None:
    challenge = parse_challenge(
        'Digest realm="sipwatch.test", nonce="Z0f3bWdH9tAGSo3nB1Q8kJyWEd4AbC8h", qop="auth"'
    )
    assert challenge == Challenge(
        realm="sipwatch.test", nonce="Z0f3bWdH9tAGSo3nB1Q8kJyWEd4AbC8h", qop=("auth",)
    )


def test_parses_kamailio_challenge_without_qop() -> None:
    challenge = parse_challenge('Digest realm="127.0.0.1", nonce="ZmFrZS1ub25jZQ=="')
    assert challenge.realm == "127.0.0.1"
    assert challenge.nonce == "ZmFrZS1ub25jZQ=="
    assert challenge.algorithm == "MD5"
    assert challenge.qop == ()
    assert (challenge.opaque, challenge.stale, challenge.userhash, challenge.domain) == (
        None,
        False,
        False,
        None,
    )


def test_parses_asterisk_style_challenge_without_spaces() -> None:
    challenge = parse_challenge(
        'Digest realm="asterisk",nonce="1700000000/0f1e2d3c4b5a6978",'
        'opaque="5ab4d0c86b8f0a6e",algorithm=md5,qop="auth"'
    )
    assert challenge.nonce == "1700000000/0f1e2d3c4b5a6978"
    assert challenge.opaque == "5ab4d0c86b8f0a6e"
    assert challenge.algorithm == "MD5"


def test_parses_odd_whitespace_and_line_breaks() -> None:
    value = 'Digest\r\n  realm = "x y" ,\n\tnonce=\t"abc"\r\n ,qop=" auth , Auth-Int ",,  '
    challenge = parse_challenge(value)
    assert challenge.realm == "x y"
    assert challenge.nonce == "abc"
    assert challenge.qop == ("auth", "auth-int")


def test_a_folded_line_inside_a_quoted_string_is_one_space() -> None:
    # RFC 3261 §25.1: LWS, folding included, means a single SP, even within a quoted-string.
    challenge = parse_challenge('Digest realm="Sip Watch \r\n\t test", nonce="n"')
    assert challenge.realm == "Sip Watch test"


def test_reordered_params_give_the_same_challenge() -> None:
    a = parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth", opaque="o"')
    b = parse_challenge('Digest opaque="o", qop="auth", algorithm=SHA-256, nonce="n", realm="r"')
    assert a == b


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("SHA-256", "SHA-256"),
        ('"SHA-256"', "SHA-256"),
        ("sha-256", "SHA-256"),
        ('"md5-SESS"', "MD5-sess"),
        pytest.param("SHA-512-256", "SHA-512-256", marks=needs_sha512_256),
    ],
)
def test_algorithm_quoted_or_not_any_case(written: str, canonical: str) -> None:
    value = f'Digest realm="r", nonce="n", qop="auth", algorithm={written}'
    assert parse_challenge(value).algorithm == canonical


def test_escaped_quotes_and_backslashes_in_realm() -> None:
    challenge = parse_challenge(r'Digest realm="the \"best\" realm \\ ever", nonce="n"')
    assert challenge.realm == 'the "best" realm \\ ever'


@pytest.mark.parametrize(
    ("written", "stale"),
    [("stale=TRUE", True), ("stale=true", True), ('stale="True"', True), ("stale=false", False)],
)
def test_stale_is_case_insensitive(written: str, stale: bool) -> None:
    assert parse_challenge(f'Digest realm="r", nonce="n", {written}').stale is stale


def test_unknown_params_are_ignored_and_names_are_case_insensitive() -> None:
    challenge = parse_challenge(
        'DIGEST Realm="r", X-Vendor="a, b=c", NONCE="n", charset=UTF-8, foo=bar,'
        ' Domain="sip:r sip:s", UserHash=TRUE'
    )
    assert challenge.realm == "r"
    assert challenge.nonce == "n"
    assert challenge.domain == "sip:r sip:s"
    assert challenge.userhash is True


def test_parse_auth_params_splits_scheme_and_params() -> None:
    assert parse_auth_params('Digest realm="a\\"b", qop=auth, nc=00000001') == (
        "Digest",
        {"realm": 'a"b', "qop": "auth", "nc": "00000001"},
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Basic realm="sipwatch.test"', "scheme 'Basic'"),
        ("Bearer mF_9.B5f-4.1JqM", "scheme 'Bearer'"),
        ('Digest realm="r"', "no nonce"),
        ('Digest nonce="n"', "no realm"),
        ("Digest", "no realm"),
        ('Digest realm="r", nonce="n", algorithm=FOO', "algorithm 'FOO'"),
        ('Digest realm="r", nonce="n', "unterminated"),
        ('Digest realm="r", nonce="n\\', "unterminated"),
        ("", "empty"),
        (" \r\n\t", "empty"),
        ('Digest realm="r", nonce=""', "empty nonce"),
        ('Digest realm="r", nonce="n", qop="auth-conf"', "qop"),
        ('Digest realm="r", nonce="n", algorithm=SHA-256-sess', "without qop"),
        ('Digest realm="r", nonce="n", realm="s"', "more than once"),
        ('Digest realm="r" nonce="n"', "expected ','"),
        ('Digest realm, nonce="n"', "no '='"),
        ('Digest realm=, nonce="n"', "no value"),
        ('Digest realm="r\x00", nonce="n"', "control character"),
        ('Digest realm="r\\\x01", nonce="n"', "control character"),
        ('Digest realm="r\\\n", nonce="n"', "control character"),
        ('Digest realm="r", nonce="n\r\nVia: x"', "control character"),
        ('Digest, realm="r", nonce="n"', "whitespace after the auth scheme"),
        ('"Digest" realm="r", nonce="n"', "auth scheme"),
        ('Digest realm="r", @="n"', "parameter name"),
        ('Digest realm="r", nonce=n"x"', "unexpected"),
    ],
)
def test_malformed_or_unanswerable_challenges(value: str, message: str) -> None:
    with pytest.raises(DigestError, match=re.escape(message)):
        parse_challenge(value)


# --- choose_challenge ----------------------------------------------------------------------

MD5_CHALLENGE = 'Digest realm="r", nonce="n1", qop="auth", algorithm=MD5'
SHA256_CHALLENGE = 'Digest realm="r", nonce="n2", qop="auth", algorithm=SHA-256'
SHA512_CHALLENGE = 'Digest realm="r", nonce="n3", qop="auth", algorithm=SHA-512-256'


@pytest.mark.parametrize(
    "values", [[MD5_CHALLENGE, SHA256_CHALLENGE], [SHA256_CHALLENGE, MD5_CHALLENGE]]
)
def test_choose_prefers_sha256_over_md5_in_any_order(values: list[str]) -> None:
    assert choose_challenge(values).algorithm == "SHA-256"


@needs_sha512_256
def test_choose_prefers_sha512_256_over_everything() -> None:
    chosen = choose_challenge([MD5_CHALLENGE, SHA512_CHALLENGE, SHA256_CHALLENGE])
    assert chosen.algorithm == "SHA-512-256"


def test_choose_ranks_sess_as_its_base_and_keeps_the_first_of_equals() -> None:
    sess = 'Digest realm="r", nonce="s", qop="auth", algorithm=SHA-256-sess'
    assert choose_challenge([sess, SHA256_CHALLENGE]).nonce == "s"
    assert choose_challenge([SHA256_CHALLENGE, sess]).nonce == "n2"


def test_choose_skips_unusable_challenges() -> None:
    values = [
        'Basic realm="r"',
        'Digest realm="r", nonce="x", algorithm=SHA-1',
        'Digest realm="r", nonce="x',
        MD5_CHALLENGE,
    ]
    chosen = choose_challenge(values, proxy=True)
    assert chosen.nonce == "n1"
    assert chosen.proxy is True


def test_choose_with_nothing_usable_names_every_problem() -> None:
    with pytest.raises(DigestError) as caught:
        choose_challenge(['Basic realm="r"', 'Digest realm="r", nonce="n", algorithm=FOO'])
    message = str(caught.value)
    assert "no usable digest challenge" in message
    assert "#1: unsupported auth scheme 'Basic'" in message
    assert "#2: unsupported digest algorithm 'FOO'" in message


def test_choose_with_no_challenges() -> None:
    with pytest.raises(DigestError, match="no digest challenge offered"):
        choose_challenge([])


def test_choose_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        choose_challenge(MD5_CHALLENGE)


# --- properties ----------------------------------------------------------------------------

PIECES = [
    "Digest",
    "digest",
    "Basic",
    " ",
    "\t",
    "\r\n",
    "\r\n ",
    "\n",
    ",",
    "=",
    '"',
    "\\",
    "\\\\",
    '\\"',
    "realm",
    "nonce",
    "qop",
    "algorithm",
    "stale",
    "opaque",
    "userhash",
    "domain",
    "MD5",
    "md5-sess",
    "SHA-256",
    "SHA-512-256-sess",
    "FOO",
    "auth",
    "auth-int",
    '"auth,auth-int"',
    "true",
    "x",
    '"y"',
    "\x00",
    "\x7f",
    "\u00e9",
    "\ud800",
    "\u2028",
]
PLAUSIBLE = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
DIGEST_PREFIXED = PLAUSIBLE.map(lambda tail: 'Digest realm="r", nonce="n", ' + tail)


def _check_total(value: str) -> None:
    try:
        challenge = parse_challenge(value)
    except DigestError:
        return
    assert challenge.algorithm in ALGORITHMS
    assert challenge.nonce
    assert all(option == option.lower() for option in challenge.qop)
    # whatever parses can be answered, or is refused with a DigestError (a lone surrogate)
    with contextlib.suppress(DigestError):
        authorization(challenge, CREDS, "OPTIONS", "sip:r")


@given(st.text())
def test_parse_challenge_on_any_text_raises_only_digest_error(value: str) -> None:
    _check_total(value)


@given(st.one_of(PLAUSIBLE, DIGEST_PREFIXED))
def test_parse_challenge_on_plausible_tokens_raises_only_digest_error(value: str) -> None:
    _check_total(value)


@given(st.lists(st.one_of(st.text(), PLAUSIBLE, DIGEST_PREFIXED), max_size=5))
def test_choose_challenge_raises_only_digest_error(values: list[str]) -> None:
    with contextlib.suppress(DigestError):
        choose_challenge(values)


PRINTABLE = st.text(st.characters(exclude_categories=("Cc", "Cs")))


@given(
    realm=PRINTABLE,
    nonce=PRINTABLE.filter(bool),
    username=PRINTABLE,
    uri=PRINTABLE,
    opaque=PRINTABLE,
)
def test_any_printable_values_survive_the_round_trip(
    realm: str, nonce: str, username: str, uri: str, opaque: str
) -> None:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    challenge = parse_challenge(
        f"Digest realm={quote(realm)}, nonce={quote(nonce)}, opaque={quote(opaque)}, qop=auth"
    )
    assert (challenge.realm, challenge.nonce, challenge.opaque) == (realm, nonce, opaque)
    params = params_of(authorization(challenge, Credentials(username, "p"), "OPTIONS", uri))
    assert (params["realm"], params["nonce"], params["opaque"]) == (realm, nonce, opaque)
    assert (params["username"], params["uri"]) == (username, uri)
