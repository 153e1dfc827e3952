"""`sipwatch check`'s fast path: the running daemon's answer, with almost nothing imported.

Owns: finding the daemon of a config file (its [daemon] http_host/http_port and the
SIPWATCH_DAEMON__HTTP_HOST/PORT overrides), asking it for `GET /check?format=FMT` (check's own
output, rendered by the daemon with check's own code: sipwatch.commands.check.daemon_answer)
and printing that. Must not know: the config's models (pydantic), probes, policy or output
formats.

Why: the OCF monitor, keepalived's `track_script` and Nagios run `check` every few seconds,
and the answer is the daemon's anyway. Importing the config machinery, the result models
(dataclasses: ~30 ms of `inspect`), `tomllib` (~25 ms), `hashlib` (OpenSSL, ~4 ms), `json`
and `socket` (`re`, `enum`: ~12 ms each) costs several times `sipsak -s`'s whole run; this
module imports `os`, `sys` and `time` (already loaded by the interpreter), `_sha256` and
`_socket` (the C modules under hashlib and socket).

Safety is the digest, not the parsing: the daemon's answer is used only when the daemon says
it runs a config whose sha256 is this file's, so a [daemon] table read wrong here can only
miss the daemon (then the full path decides), never take another config's verdict. Anything
unusual (no daemon, another config, an answer without the exit code, a TOML file this small
reader does not fully understand: it hands those to tomllib) returns None, and `check` goes
the full way: the config loaded and validated, the daemon's /status checked against it, or the
probes run here.
"""

from __future__ import annotations

import os
import sys

from sipwatch.exitcodes import CHECK_COLOUR, CHECK_MISSING_TOOL

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing itself costs ~15 ms of start-up)
    from typing import Any

#: The config `check` reads unless --config names another.
DEFAULT_CONFIG = "/etc/sipwatch/sipwatch.toml"
#: Where the daemon listens unless the config or the environment says otherwise (the
#: defaults of sipwatch.config's daemon section; tests/unit/test_check_fast.py compares).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9160
#: Exit codes the daemon may hand back: every `check` code but 6 (a bad config stops the
#: daemon from starting at all).
DAEMON_CODES = frozenset({*CHECK_COLOUR, CHECK_MISSING_TOOL})
#: Formats the daemon renders (sipwatch.commands.check.RENDERERS).
FORMATS = ("text", "json", "shell")


def answer_from_daemon(config: str, fmt: str) -> int | None:
    """Print the daemon's answer for `check --config CONFIG --format FMT` and return its
    exit code; None (nothing printed) when there is no daemon answer to trust."""
    if fmt not in FORMATS:
        return None
    raw = _read_config(config)
    if raw is None:
        return None
    endpoint = daemon_endpoint(raw)
    if endpoint is None:
        return None
    from sipwatch.errors import DaemonStatusError
    from sipwatch.status_client import http_request

    try:
        headers, body = http_request(*endpoint, f"/check?format={fmt}")
    except DaemonStatusError:
        return None
    code = headers.get(b"x-sipwatch-exit-code", b"")
    if headers.get(b"x-sipwatch-config-sha256") != sha256_hex(raw).encode("ascii"):
        return None  # another config (or not a sipwatch daemon at all)
    if not (code.isdigit() and len(code) <= 3 and int(code) in DAEMON_CODES):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    sys.stdout.write(text)
    sys.stdout.flush()
    return int(code)


def _read_config(config: str) -> bytes | None:
    path = config
    if "/" not in config and not config.endswith(".toml"):  # maybe a shipped set's name
        from sipwatch.catalog import find_config
        from sipwatch.errors import ConfigError

        try:
            path = str(find_config(config))
        except ConfigError:
            return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None


def sha256_hex(data: bytes) -> str:
    """hashlib.sha256(data).hexdigest(), from the builtin implementation when there is one
    (hashlib itself loads OpenSSL first)."""
    try:
        builtin = __import__("_sha256")  # CPython 3.11 (3.12 calls it _sha2)
    except ImportError:  # pragma: no cover - other interpreters
        import hashlib

        return hashlib.sha256(data).hexdigest()
    return str(builtin.sha256(data).hexdigest())


def daemon_endpoint(raw: bytes) -> tuple[str, int] | None:
    """(host, port) of the daemon configured in this TOML file, with the environment's
    overrides applied as pydantic-settings applies them; None when it has no HTTP side
    (port 0) or the file is not readable as TOML."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    section = _daemon_section(text)
    if section is None:
        section = _daemon_section_tomllib(text)
        if section is None:
            return None
    host = os.environ.get("SIPWATCH_DAEMON__HTTP_HOST", section.get("http_host", DEFAULT_HOST))
    port = os.environ.get("SIPWATCH_DAEMON__HTTP_PORT", section.get("http_port", DEFAULT_PORT))
    if not isinstance(host, str) or not host or isinstance(port, bool):
        return None
    port_text = str(port)  # an env override is text: ASCII digits only, as pydantic reads it
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        return None
    number = int(port_text)
    return (host, number) if 0 < number <= 65535 else None


def _daemon_section_tomllib(text: str) -> dict[str, Any] | None:
    import tomllib

    try:
        section = tomllib.loads(text).get("daemon", {})
    except tomllib.TOMLDecodeError:
        return None
    return section if isinstance(section, dict) else None


def _daemon_section(text: str) -> dict[str, Any] | None:
    """http_host and http_port of the [daemon] table, read line by line; None as soon as
    the file holds anything this reader does not fully understand where it could matter: a
    multi-line string (anything may hide inside), a table header that is not a plain
    `[name]`/`[[name]]`, a `daemon` key outside the table (`daemon.http_port = ...`,
    `daemon = {...}`), a [daemon] subtable, or an http_* key or value in [daemon] that is
    not a plain key with a plain string or decimal integer. Then tomllib reads the file."""
    if '"""' in text or "'''" in text:
        return None
    table: str | None = ""  # "" is the root table
    seen_daemon = False
    found: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            name = _table_name(line)
            if name is None:
                return None
            if name == "daemon":
                if seen_daemon:
                    return None
                seen_daemon = True
            elif name.startswith("daemon."):
                return None
            table = name
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if table == "" and (not eq or key.startswith(("daemon", '"', "'"))):
            return None
        if table == "daemon":
            if not eq or key.startswith(('"', "'")) or "." in key:
                return None
            if key in ("http_host", "http_port"):
                parsed = _plain_value(value.strip())
                if parsed is None:
                    return None
                found[key] = parsed
            elif key.startswith("http_"):
                continue  # http_users_file and friends: not needed here
    return found


def _table_name(line: str) -> str | None:
    """The name of a `[name]` or `[[name]]` header line (a trailing comment allowed), when
    the name is bare keys joined by dots; else None."""
    head = line.partition("#")[0]
    head = head.strip()
    inner = head[2:-2] if head.startswith("[[") and head.endswith("]]") else head[1:-1]
    if not head.endswith("]") or not inner:
        return None
    name = inner.strip()
    allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
    if not name or any(c not in allowed for c in name):
        return None
    return name


def _plain_value(value: str) -> str | int | None:
    """A basic or literal string without escapes, or a decimal integer, with an optional
    trailing comment; None for anything else."""
    if value[:1] in ('"', "'"):
        quote = value[0]
        end = value.find(quote, 1)
        if end < 0:
            return None
        inner, rest = value[1:end], value[end + 1 :].strip()
        if (quote == '"' and "\\" in inner) or (rest and not rest.startswith("#")):
            return None
        return inner
    number, _, rest = value.partition("#")
    number = number.strip()
    if not (number.isascii() and number.isdigit()) or (len(number) > 1 and number[0] == "0"):
        return None
    return int(number)
