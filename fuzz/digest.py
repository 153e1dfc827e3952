"""A WWW-Authenticate / Proxy-Authenticate value through `parse_challenge` and, when it
parses, `authorization` (the answer is computed from the challenge's fields), and the same
text as several header values through `choose_challenge`. Allowed: DigestError."""

from __future__ import annotations

import contextlib

from sipwatch.errors import DigestError
from sipwatch.sip.digest import Credentials, authorization, choose_challenge, parse_challenge

_CREDS = Credentials("monitor", "s3cret")


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")  # as parse_message decodes headers
    try:
        challenge = parse_challenge(text, proxy=bool(data[:1] == b"P"))
        value = authorization(
            challenge, _CREDS, "REGISTER", "sip:example.com", cnonce="0a4f113b", body=b"x"
        )
        assert value.startswith("Digest ") and "\n" not in value and "\r" not in value
    except DigestError:
        pass
    with contextlib.suppress(DigestError):
        choose_challenge(text.split("\n"))
