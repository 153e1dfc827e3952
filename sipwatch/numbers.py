"""Decimal numbers in text sipwatch did not write: a peer's SIP bytes, a URI, a config value,
a command-line argument, a pidfile.

Owns: `ascii_int`, the one way such a number is read. Must not know: where the text came from;
the caller names the field and chooses the exception (SipParseError for a peer's message,
SipUriError for a URI, ValueError or ConfigError for local input).

Why not `int()`: RFC 3261 §25.1 (and every grammar sipwatch reads) has DIGIT = %x30-39, but
`str.isdigit()`, `re`'s `\\d` and `int()` take any Unicode digit: Arabic-Indic
"\\u0665\\u0660\\u0666\\u0660" is 5060 to `int()`, a fullwidth "\\uff12\\uff10\\uff10" passes
`\\d{3}`, and a superscript "\\u00b2" passes `isdigit()` and then makes `int()` raise
ValueError. `int()` also accepts "+1", " 1 " and "1_000", and refuses more than 4,300 digits
with a ValueError of its own.
"""

from __future__ import annotations

import re

__all__ = ["ascii_int"]

_DIGITS = re.compile(r"[0-9]+")  # an explicit class: `\d` would take any Unicode digit
_SHOWN = 20  # how much of a foreign value an error message quotes


def ascii_int(
    text: str,
    field: str,
    *,
    low: int,
    high: int,
    digits: int | None = None,
    error: type[Exception] = ValueError,
) -> int:
    """`text` read as 1*DIGIT (ASCII only, leading zeros allowed), `low` <= value <= `high`.

    `digits` asks for exactly that many (a status code is 3DIGIT, RFC 3261 §25.1). Anything
    else raises `error` with a message that starts with `field` and shows the value with
    non-ASCII characters escaped, so fullwidth digits cannot pass for "200" in a log.
    The caller strips the whitespace its grammar allows; none is accepted here.
    """
    if not _DIGITS.fullmatch(text):
        raise error(f"{field}: {_show(text)} is not an ASCII decimal number")
    if digits is not None and len(text) != digits:
        raise error(f"{field}: {_show(text)} is not {digits} digits")
    significant = text.lstrip("0") or "0"
    # Compare lengths first: never convert thousands of digits just to refuse them.
    if len(significant) > len(str(high)) or not low <= int(significant) <= high:
        raise error(f"{field}: {_show(text)} is out of range {low}-{high}")
    return int(significant)


def _show(text: str) -> str:
    cut = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return ascii(cut)
