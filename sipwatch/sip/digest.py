"""Client-side SIP digest authentication, sans-IO: challenge in, credentials header value out.

Owns: parsing a `WWW-Authenticate` / `Proxy-Authenticate` header value into a `Challenge`,
choosing among several challenges, and computing the `Authorization` / `Proxy-Authorization`
header value that answers one. Must not know: sockets, clocks, transactions, or where the
password came from.

References:
    RFC 3261 §22 (SIP's use of digest), §25.1 (LWS, token, quoted-string grammar)
    RFC 2617 §3.2 (qop, cnonce, nc, -sess), RFC 2069 (the no-qop compatibility form)
    RFC 7616 §3.3-§3.4 (SHA-256, SHA-512-256, userhash), §3.9 (example vectors, erratum 4897)
    RFC 8760 §2 (the SHA-2 algorithms in SIP, several challenges in one response), §3

Decisions:
    * Usernames are sent in the quoted-string `username` parameter. RFC 3261 §25.1 already allows
      UTF-8 there (qdtext includes UTF8-NONASCII), so non-ASCII usernames go verbatim and `"` and
      `\\` are escaped as quoted-pairs. The RFC 7616 §3.4.4 `username*` ext-value is not sent:
      RFC 3261's grammar has no such parameter, so a SIP server cannot be expected to read it.
      `userhash=true` is honoured.
    * Every string is hashed as UTF-8 (RFC 7616 §4). A `str` decoded with `surrogateescape`
      round-trips to its original bytes, so a non-UTF-8 realm still hashes as the server sent it.
    * A `-sess` challenge without `qop` is refused: its A1 needs a cnonce (RFC 2617 §3.2.2.2),
      and a cnonce may only be sent together with qop (RFC 2617 §3.2.2).
    * Among several challenges the strongest algorithm wins, not the topmost (see
      `choose_challenge`).

Every failure to understand or answer a challenge is a `DigestError`. A caller's own mistake
(nc out of range, an empty cnonce, a `str` where a sequence of values belongs) is a
`ValueError` / `TypeError`. No message ever contains the password.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from sipwatch.errors import DigestError

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "Credentials",
    "authorization",
    "choose_challenge",
    "parse_auth_params",
    "parse_challenge",
    "response_digest",
]

# RFC 7616 §3.3 and RFC 8760 §2: the algorithms this module can answer, in canonical spelling.
ALGORITHMS: frozenset[str] = frozenset(
    {"MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess"}
)

_CANONICAL: dict[str, str] = {name.lower(): name for name in ALGORITHMS}

# The hashlib name of each base algorithm; "-sess" changes A1, not the hash (RFC 7616 §3.4.2).
_HASHLIB_NAME: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}

# Preference among base algorithms for choose_challenge; a -sess variant ranks as its base.
_STRENGTH: dict[str, int] = {"MD5": 0, "SHA-256": 1, "SHA-512-256": 2}

# The qop values this module can answer (RFC 2617 §3.2.1), in order of preference.
_QOPS: tuple[str, ...] = ("auth", "auth-int")

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")

# RFC 3261 §25.1: a folded line break (LWS) has the semantics of one SP, quoted-strings included.
_FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]+")

# Whitespace between elements. Bare CR/LF are tolerated there too, for values a caller split
# across lines without re-folding them.
_WS = " \t\r\n"

_MAX_SHOWN = 40  # how much of a remote-supplied value an error message quotes


@dataclass(frozen=True, slots=True)
class Challenge:
    """One digest challenge (RFC 7616 §3.3, RFC 3261 §22.4), validated on construction.

    `algorithm` is normalised to its canonical spelling and `qop` to lower case, so a Challenge
    built by hand is as trustworthy as one from `parse_challenge`.
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"  # RFC 2617 §3.2.1: absent means MD5
    qop: tuple[str, ...] = ()  # offered options, lower case; () means the RFC 2069 form
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False
    domain: str | None = None
    proxy: bool = False  # came from Proxy-Authenticate in a 407 (RFC 3261 §22.3)

    def __post_init__(self) -> None:
        # object.__setattr__ is the documented way to normalise fields of a frozen dataclass.
        object.__setattr__(self, "algorithm", _canonical_algorithm(self.algorithm))
        qop = tuple(option.lower() for option in self.qop)
        object.__setattr__(self, "qop", qop)
        if not self.nonce:
            raise DigestError("challenge has an empty nonce")
        if qop and not any(option in _QOPS for option in qop):
            # RFC 2617 §3.2.1: unknown options are ignored; with nothing left we cannot comply.
            raise DigestError(f"challenge offers qop {_show(','.join(qop))}, not auth or auth-int")
        if not qop and self.algorithm.endswith("-sess"):
            raise DigestError(
                f"challenge uses {self.algorithm} without qop; its A1 needs a cnonce, which"
                " may only be sent with qop (RFC 2617 §3.2.2)"
            )

    @property
    def authorization_header(self) -> str:
        """The header that carries the answer: RFC 3261 §22.2 (401) or §22.3 (407)."""
        return "Proxy-Authorization" if self.proxy else "Authorization"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password. The password never appears in repr() or str()."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split a challenge or credentials header value into its scheme and auth-params.

    `'Digest realm="a\\"b", qop=auth'` gives `("Digest", {"realm": 'a"b', "qop": "auth"})`.
    Parameter names are lower-cased, quoted-strings are unescaped, and the scheme keeps its
    spelling. Raises DigestError, naming the problem and its offset, on anything malformed;
    no other exception escapes for any `str`.
    """
    text = _FOLD_RE.sub(" ", value)
    scheme, pos = _read_scheme(text)
    return scheme, _read_params(text, pos)


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse a `WWW-Authenticate` (or, with proxy=True, `Proxy-Authenticate`) header value.

    Unknown parameters are ignored (RFC 7616 §3.3); names and the scheme are case-insensitive.
    Raises DigestError for a non-Digest scheme, missing realm or nonce, an unsupported
    algorithm or qop, or malformed syntax; never anything else for any `str`.
    """
    text = _FOLD_RE.sub(" ", value)
    scheme, pos = _read_scheme(text)
    # Checked before the params: other schemes (Bearer, Negotiate) may carry token68 syntax.
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported auth scheme {_show(scheme)}: only Digest is answered")
    params = _read_params(text, pos)
    for required in ("realm", "nonce"):
        if required not in params:
            raise DigestError(f"digest challenge has no {required}")
    qop = params.get("qop")
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    _hash_hex(algorithm, b"")  # refuse now, not at answer time, if this OpenSSL lacks the hash
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        # RFC 2617 §3.2.1: qop-options is a quoted, comma-separated list of tokens.
        qop=tuple(o.strip() for o in qop.split(",") if o.strip()) if qop is not None else (),
        opaque=params.get("opaque"),
        # RFC 7616 §3.3: anything but a case-insensitive "true" means false.
        stale=params.get("stale", "").lower() == "true",
        userhash=params.get("userhash", "").lower() == "true",
        domain=params.get("domain"),
        proxy=proxy,
    )


def choose_challenge(values: Sequence[str], *, proxy: bool = False) -> Challenge:
    """Pick the challenge to answer from all the challenge header values of one response.

    Challenges that do not parse or cannot be answered are skipped (RFC 8760 §2.4: the client
    MUST ignore challenges it does not understand). Among the rest the strongest algorithm wins,
    a -sess variant ranking as its base, and ties go to the earlier one. RFC 8760 §2.4 says to
    use the topmost supported challenge "unless a local policy dictates otherwise"; this is
    that local policy, because challenges are not integrity-protected and an on-path attacker
    could reorder them to put MD5 on top (RFC 8760 §3).

    All values are treated as one realm's offer; answering several realms at once (a forking
    proxy, RFC 3261 §22.3) is the caller's business. Raises DigestError if nothing is usable.
    """
    if isinstance(values, str):
        raise TypeError("choose_challenge takes a sequence of header values, not one str")
    best: Challenge | None = None
    problems: list[str] = []
    for index, value in enumerate(values, start=1):
        try:
            challenge = parse_challenge(value, proxy=proxy)
        except DigestError as exc:
            problems.append(f"#{index}: {exc}")
            continue
        if best is None or _strength(challenge) > _strength(best):
            best = challenge
    if best is not None:
        return best
    if not problems:
        raise DigestError("no digest challenge offered")
    raise DigestError("no usable digest challenge: " + "; ".join(problems))


def response_digest(
    *,
    algorithm: str,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: int = 1,
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The `response` value, lower-case hex (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).

    `username` is the plain username even when userhash is in use (RFC 7616 §3.4.4), and `uri`
    is the digest-uri, in SIP the Request-URI (RFC 3261 §22.4). With qop=None the RFC 2069
    form is computed and nc/cnonce are unused (except by a -sess A1).
    """
    algorithm = _canonical_algorithm(algorithm)
    if qop not in (None, *_QOPS):
        raise DigestError(f"cannot compute a response for qop {_show(str(qop))}")

    def h(data: str) -> str:
        return _hash_hex(algorithm, _utf8(data, "nonce, cnonce, method or uri"))

    # RFC 7616 §3.4.2: A1 = user:realm:password, and for -sess H(that):nonce:cnonce.
    a1 = _utf8(f"{username}:{realm}:{password}", "username, realm or password")
    ha1 = _hash_hex(algorithm, a1)
    if algorithm.endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    # RFC 7616 §3.4.3: A2 = method:uri, and for auth-int method:uri:H(entity-body).
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{_hash_hex(algorithm, body)}"
    ha2 = h(a2)
    if qop is None:
        # RFC 2069 §2.1.2, kept by RFC 2617 §3.2.2.1 for servers that offer no qop.
        return h(f"{ha1}:{nonce}:{ha2}")
    # RFC 7616 §3.4.1: KD(H(A1), nonce:nc:cnonce:qop:H(A2)), nc as 8 lower-case hex digits.
    return h(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


def authorization(
    challenge: Challenge,
    creds: Credentials,
    method: str,
    uri: str,
    *,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The `Authorization` / `Proxy-Authorization` header value answering `challenge`.

    `uri` is the Request-URI of the request being authorised (RFC 3261 §22.4) and `body` its
    body, used only for qop=auth-int. `nc` counts uses of this nonce (RFC 2617 §3.2.2), from 1.
    `cnonce` defaults to a fresh random value per call; pass one only to reproduce a vector.
    qop=auth is preferred when offered, then auth-int; with no qop offered the RFC 2069 form is
    sent (no cnonce, nc or qop). Which header name to use: `challenge.authorization_header`.
    """
    if not 1 <= nc <= 0xFFFFFFFF:
        raise ValueError(f"nc must be between 1 and 0xffffffff, not {nc}")
    if cnonce == "":
        raise ValueError("cnonce must not be empty")
    # Challenge guarantees that a non-empty qop offers auth or auth-int.
    qop = next((option for option in _QOPS if option in challenge.qop), None)
    if qop is None:
        cnonce = None  # RFC 2617 §3.2.2: cnonce MUST NOT be sent without qop
    elif cnonce is None:
        cnonce = secrets.token_hex(8)  # RFC 2617 §3.2.2: unguessable, new for each request

    response = response_digest(
        algorithm=challenge.algorithm,
        username=creds.username,
        password=creds.password,
        realm=challenge.realm,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc,
        cnonce=cnonce or "",
        body=body,
    )
    username = creds.username
    if challenge.userhash:
        # RFC 7616 §3.4.4: username = H(unq(username) ":" unq(realm)).
        username = _hash_hex(
            challenge.algorithm, _utf8(f"{creds.username}:{challenge.realm}", "username")
        )

    parts = [
        f"username={_quote(username, 'username')}",
        f"realm={_quote(challenge.realm, 'realm')}",
        f"nonce={_quote(challenge.nonce, 'nonce')}",
        f"uri={_quote(uri, 'uri')}",
        f'response="{response}"',
        # RFC 7616 §3.4: algorithm and qop are tokens; nc is 8 hex digits, never quoted.
        f"algorithm={challenge.algorithm}",
    ]
    if qop is not None and cnonce is not None:
        parts += [f"cnonce={_quote(cnonce, 'cnonce')}", f"qop={qop}", f"nc={nc:08x}"]
    if challenge.opaque is not None:
        # RFC 7616 §3.4: opaque MUST be returned unchanged.
        parts.append(f"opaque={_quote(challenge.opaque, 'opaque')}")
    if challenge.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


# --- tokenizer (RFC 3261 §25.1, RFC 7235 §2.1) ---------------------------------------------


def _read_scheme(text: str) -> tuple[str, int]:
    """Read the auth-scheme token and the whitespace after it; return it and the next offset."""
    pos = _skip(text, 0, _WS)
    if pos == len(text):
        raise DigestError("empty challenge")
    match = _TOKEN_RE.match(text, pos)
    if match is None:
        raise DigestError(f"expected an auth scheme at offset {pos}, found {_show(text[pos])}")
    end = match.end()
    if end < len(text) and text[end] not in _WS:
        raise DigestError(f"expected whitespace after the auth scheme at offset {end}")
    return match.group(), end


def _read_params(text: str, pos: int) -> dict[str, str]:
    """Read `name=value` pairs separated by commas; empty list elements are allowed."""
    params: dict[str, str] = {}
    while True:
        pos = _skip(text, pos, _WS + ",")
        if pos == len(text):
            return params
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise DigestError(
                f"expected a parameter name at offset {pos}, found {_show(text[pos])}"
            )
        name = match.group().lower()
        pos = _skip(text, match.end(), _WS)
        if pos == len(text) or text[pos] != "=":
            raise DigestError(f"parameter {_show(name)} at offset {match.start()} has no '='")
        pos = _skip(text, pos + 1, _WS)
        if pos < len(text) and text[pos] == '"':
            value, pos = _read_quoted(text, pos, name)
        else:
            value, pos = _read_bare(text, pos, name)
        if name in params:
            # RFC 7235 §2.1: each parameter name MUST only occur once per challenge.
            raise DigestError(f"parameter {_show(name)} appears more than once")
        params[name] = value
        pos = _skip(text, pos, _WS)
        if pos < len(text) and text[pos] != ",":
            raise DigestError(f"expected ',' after parameter {_show(name)} at offset {pos}")


def _read_quoted(text: str, pos: int, name: str) -> tuple[str, int]:
    """Read a quoted-string starting at the opening quote; return its unescaped content."""
    start = pos
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            # RFC 3261 §25.1: quoted-pair = "\" followed by any char except CR and LF.
            pos += 1
            if pos == len(text):
                break
            # CR and LF cannot be escaped; other controls could be, but _quote will not send
            # them back, and a challenge parsed here must be one that can be answered.
            char = text[pos]
        if _is_control(char):
            raise DigestError(
                f"control character {char!r} inside the quoted value of {_show(name)}"
            )
        out.append(char)
        pos += 1
    raise DigestError(f"unterminated quoted-string for {_show(name)} starting at offset {start}")


def _read_bare(text: str, pos: int, name: str) -> tuple[str, int]:
    """Read an unquoted value: up to whitespace or a comma.

    Stricter servers send only tokens here; this also accepts the `/` and `=` of an unquoted
    base64 nonce, since refusing them would gain nothing.
    """
    start = pos
    while pos < len(text) and text[pos] not in _WS and text[pos] != ",":
        if text[pos] == '"' or _is_control(text[pos]):
            raise DigestError(f"unexpected {text[pos]!r} in the value of {_show(name)}")
        pos += 1
    if pos == start:
        raise DigestError(f"parameter {_show(name)} has no value")
    return text[start:pos], pos


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _is_control(char: str) -> bool:
    return (char < " " and char != "\t") or char == "\x7f"


# --- helpers ------------------------------------------------------------------------------


def _canonical_algorithm(name: str) -> str:
    canonical = _CANONICAL.get(name.lower())
    if canonical is None:
        raise DigestError(f"unsupported digest algorithm {_show(name)}")
    return canonical


def _strength(challenge: Challenge) -> int:
    return _STRENGTH[challenge.algorithm.removesuffix("-sess")]


def _hash_hex(algorithm: str, data: bytes) -> str:
    name = _HASHLIB_NAME[algorithm.removesuffix("-sess")]
    try:
        hasher = hashlib.new(name, data)
    except ValueError:  # an OpenSSL without SHA-512/256, or MD5 blocked in FIPS mode
        raise DigestError(f"{algorithm} is not available in this Python's hashlib") from None
    return hasher.hexdigest()


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise DigestError(f"{what} cannot be encoded as UTF-8") from None


def _quote(value: str, what: str) -> str:
    """Render a quoted-string (RFC 3261 §25.1), escaping `"` and `\\` as quoted-pairs.

    Control characters are refused rather than escaped: CR and LF cannot be escaped at all, and
    a value carrying any of them would let a challenge inject header lines into our request.
    """
    if any(_is_control(char) for char in value):
        raise DigestError(f"{what} contains a control character and cannot be sent")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _show(value: str) -> str:
    """A remote-supplied value fit for an error message: repr'd (no raw line breaks), cut short."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "..."
    return repr(value)
