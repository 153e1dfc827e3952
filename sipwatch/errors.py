"""The exception tree of sipwatch. Everything sipwatch raises on purpose is a SipwatchError.

    SipwatchError
    ├── ConfigError            bad config file, bad env override, bad CLI value (local error)
    ├── SecretError            a password file or env var that cannot be read (local error)
    ├── DaemonStatusError      the daemon's /status could not be had: no daemon, not a 200,
    │                          too slow, too big, not a JSON object (sipwatch.status_client;
    │                          `sipwatch check` then probes by itself)
    ├── ClusterError           a Pacemaker tool failed, hung or printed garbage (sipwatch.cluster;
    │                          the agents turn it into a failed ActionResult, never raise it)
    ├── StartError             a local command could not be started: not installed, not
    │                          permitted, not executable (sipwatch.subproc; each caller maps it
    │                          onto its own "missing tool" handling, never lets it escape)
    └── SipError
        ├── SipParseError      bytes that are not a valid SIP message (remote's fault)
        ├── SipUriError        a URI that is not a valid SIP/SIPS URI
        ├── DigestError        a challenge we cannot answer (unknown algorithm, no realm...)
        ├── ResolveError       RFC 3263 resolution found no usable target (in sip/resolve.py)
        └── TransportError     could not open a connection; `kind` says why (refused, tls...,
                               bad_status for a refused WebSocket upgrade)

Probes never let these escape: a probe turns every failure into a ProbeResult whose outcome
says what failed. Lower-layer errors (OSError, ssl.SSLError, dns.exception.DNSException) are
translated once, at the edge where they happen, with `raise ... from exc`.
"""

from __future__ import annotations


class SipwatchError(Exception):
    """Base class of every error sipwatch raises on purpose."""


class ConfigError(SipwatchError):
    """Configuration is invalid. The message names the key and the reason."""


class SecretError(SipwatchError):
    """A secret (password file or env var) is missing or unreadable. Never holds the secret."""


class DaemonStatusError(SipwatchError):
    """The daemon's GET /status failed or its answer is unusable. The message says why."""


class ClusterError(SipwatchError):
    """A Pacemaker command-line tool failed, timed out or printed something unparseable.

    `summary` names the tool and what went wrong, never its argv or output in full; `rc` is
    the tool's exit code when it ran and failed (None: timed out, not run, or bad output)."""

    def __init__(self, summary: str, *, rc: int | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.rc = rc


class StartError(SipwatchError):
    """A command could not be started (exec failed): `program` is argv[0], `reason` the OS's
    words for it; `missing` when there is no such file, `denied` when it is not permitted."""

    def __init__(self, program: str, reason: str, *, missing: bool, denied: bool) -> None:
        super().__init__(f"{program}: {reason}")
        self.program = program
        self.reason = reason
        self.missing = missing
        self.denied = denied


class SipError(SipwatchError):
    """Base of the SIP protocol errors."""


class SipParseError(SipError):
    """Bytes that do not form a valid SIP message (RFC 3261 §7, §25)."""


class SipUriError(SipError):
    """A string that is not a valid SIP or SIPS URI (RFC 3261 §19.1)."""


class DigestError(SipError):
    """A digest challenge that cannot be answered (RFC 7616, RFC 8760)."""


class TransportError(SipError):
    """A transport could not be opened or failed. `kind` is an Outcome value naming why:
    "refused", "unreachable", "timeout", "tls_error" or "local_error"; for WebSocket also
    "bad_status" (the server answered the upgrade with `http_status`, not 101) and
    "malformed" (a broken handshake, or a 101 that does not select the `sip` subprotocol)."""

    def __init__(self, kind: str, detail: str, *, http_status: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.http_status = http_status
