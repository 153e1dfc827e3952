"""Command line: argument parsing, output and exit codes only; no probing logic here.

`sipwatch probe` is a drop-in for `sipsak -s` and is timed against it, and `sipwatch check` runs
every few seconds under Pacemaker and keepalived, so this module imports nothing at start-up
(not even argparse or typing); everything is imported inside the command that needs it. A
plain `check` (only --config and --format text/json/shell) first asks the daemon through
sipwatch.check_fast, before argparse is loaded; `--help`, errors and every other command go
through argparse.

Exit codes of `sipwatch probe` (same meaning as sipsak's):
    0  alive: the answer's status is counted as alive
    1  answered, but not alive (bad status, 503 draining, credentials rejected, a call
       answered without audio: no_media)
    2  local, usage or config error (nothing was learnt about the peer)
    3  no answer or transport error (timeout, refused, unreachable, TLS, garbage, DNS)
"""

from __future__ import annotations

import sys

from sipwatch import __version__
from sipwatch.exitcodes import PROBE_LOCAL as EXIT_LOCAL
from sipwatch.exitcodes import probe_exit_code as exit_code_for

TYPE_CHECKING = False  # (importing typing costs ~15 ms)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from sipwatch.model import ProbeResult


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with `only`, just the subcommands needed to parse that command
    (configuring every subcommand imports its module: ~8 ms on every one-shot probe)."""
    import argparse

    from sipwatch.sip.target import SUPPORTED_TRANSPORTS

    parser = argparse.ArgumentParser(
        prog="sipwatch", description="SIP-aware health probe and failover trigger."
    )
    parser.add_argument("--version", action="version", version=f"sipwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    probe = sub.add_parser(
        "probe",
        help="probe one SIP URI once (a correct `sipsak -s`)",
        description="Send one OPTIONS (or REGISTER), or place one call (INVITE, media, BYE) "
        "and report. Exit: 0 alive, 1 answered but not alive (or a call without audio), "
        "2 local/usage/config error, 3 no answer or transport error.",
    )
    probe.add_argument("uri", nargs="?", help="sip:/sips: URI, e.g. sip:pbx.example.com")
    probe.add_argument(
        "--method", choices=("OPTIONS", "REGISTER", "INVITE"), default="OPTIONS", type=str.upper
    )
    probe.add_argument(
        "--transport",
        choices=SUPPORTED_TRANSPORTS,
        type=str.lower,
        help="overrides the URI's transport parameter (ws/wss: SIP over WebSocket, RFC 7118)",
    )
    probe.add_argument("--user", help="digest username (default: the URI's user part)")
    secret = probe.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-file",
        metavar="F",
        help="file whose first line is the "
        "password (passwords are never taken on the command line)",
    )
    secret.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the password"
    )
    probe.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="deadline in seconds (default 2; INVITE: for the final answer, default 5)",
    )
    probe.add_argument(
        "--alive",
        default="2xx",
        metavar="CODES",
        help="status codes counted as alive, e.g. 2xx,404 (default 2xx)",
    )
    probe.add_argument(
        "--expires", type=int, default=60, metavar="S", help="REGISTER: Expires (default 60)"
    )
    probe.add_argument(
        "--keep", action="store_true", help="REGISTER: keep the binding (no unregister)"
    )
    probe.add_argument("--registrar", metavar="URI", help="REGISTER: send to this URI")
    probe.add_argument(
        "--media-s",
        type=float,
        default=1.0,
        metavar="S",
        help="INVITE: seconds of RTP once answered, 0 = signalling only (default 1)",
    )
    probe.add_argument("--ca-file", metavar="F", help="TLS: CA bundle to verify against")
    probe.add_argument("--server-name", metavar="NAME", help="TLS: SNI and name to verify")
    probe.add_argument("--insecure", action="store_true", help="TLS: do not verify the certificate")
    probe.add_argument(
        "--ws-path", default="/", metavar="PATH", help="WS/WSS: path of the upgrade (default /)"
    )
    probe.add_argument("--ws-origin", metavar="ORIGIN", help="WS/WSS: send this Origin header")
    probe.add_argument("--dns-server", metavar="IP[:PORT]", help="resolve with this server")
    probe.add_argument(
        "--t1", type=float, default=0.5, metavar="S", help="RFC 3261 T1 (default 0.5)"
    )
    probe.add_argument("--config", metavar="FILE", help="run the probes of a config file")
    probe.add_argument("--name", action="append", help="with --config: only these probes")
    probe.add_argument("--json", action="store_true", help="print JSON")
    probe.add_argument("--force-asyncio", action="store_true", help=argparse.SUPPRESS)

    config = sub.add_parser("config", help="validate a config file")
    config.add_argument("file")

    for name in _COMMANDS:
        if only is None or only == name:
            _command(name).configure(sub)
    return parser


#: Further subcommands, one module each under sipwatch/commands/, with
#: `configure(subparsers)` and `run(args) -> int`. Keep their top-level imports light:
#: the parser is built on every run, `sipwatch probe` included.
_COMMANDS: tuple[str, ...] = ("check", "ocf", "cluster", "run")


def _command(name: str) -> Any:
    import importlib

    return importlib.import_module(f"sipwatch.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    plain = _plain_check(words)
    if plain is not None:
        from sipwatch.check_fast import answer_from_daemon

        code = answer_from_daemon(*plain)
        if code is not None:
            return code
    first = next((w for w in words if not w.startswith("-")), None)
    known = first in ("probe", "config", *_COMMANDS)
    args = _parser(only=first if known else None).parse_args(argv)
    if plain is not None:
        args.daemon_asked = True  # it did not answer (or not for this config): go the full way
    try:
        if args.command == "probe":
            return _cmd_probe(args)
        if args.command == "config":
            return _cmd_config(args)
        if args.command in _COMMANDS:
            return int(_command(args.command).run(args))
    except KeyboardInterrupt:
        return 130
    return EXIT_LOCAL  # pragma: no cover - argparse requires a command


def _plain_check(words: list[str]) -> tuple[str, str] | None:
    """(config, format) of `check [--config FILE] [--format text|json|shell] [--json]`, the
    form the OCF shim and monitors use, read without argparse (~15 ms); None for anything
    else (other options, abbreviations, --help, a value that looks like an option), which
    argparse then reads and reports exactly as always. Later options win, as in argparse."""
    from sipwatch.check_fast import DEFAULT_CONFIG

    if not words or words[0] != "check":
        return None
    config, fmt = DEFAULT_CONFIG, "text"
    rest = iter(words[1:])
    for word in rest:
        name, eq, value = word.partition("=")
        if name == "--json" and not eq:
            fmt = "json"
            continue
        if name not in ("--config", "--format"):
            return None
        if not eq:
            value = next(rest, "")
        if not value or value.startswith("-"):
            return None
        if name == "--config":
            config = value
        elif value in ("text", "json", "shell"):
            fmt = value
        else:
            return None
    return config, fmt


def _fail(message: str) -> int:
    print(f"sipwatch: {message}", file=sys.stderr)
    return EXIT_LOCAL


def _spec_from_args(args: argparse.Namespace) -> Any:
    from sipwatch.probes.sip_options import SipOptionsSpec

    common: dict[str, Any] = {
        "uri": args.uri,
        "transport": args.transport,
        "timeout_s": args.timeout or (5.0 if args.method == "INVITE" else 2.0),
        "alive_codes": tuple(c for c in args.alive.split(",") if c),
        "user": args.user,
        "password_file": args.password_file,
        "password_env": args.password_env,
        "tls_verify": not args.insecure,
        "tls_ca_file": args.ca_file,
        "tls_server_name": args.server_name,
        "ws_path": args.ws_path,
        "ws_origin": args.ws_origin,
    }
    if args.method == "INVITE":
        from sipwatch.probes.sip_call import SipCallSpec

        return SipCallSpec(**common, media_s=args.media_s)
    if args.method == "REGISTER":
        from sipwatch.probes.sip_register import SipRegisterSpec

        return SipRegisterSpec(
            **common, registrar=args.registrar, expires_s=args.expires, keep_registration=args.keep
        )
    return SipOptionsSpec(**common)


def _cmd_probe(args: argparse.Namespace) -> int:
    from sipwatch.errors import ConfigError
    from sipwatch.numbers import ascii_int
    from sipwatch.probes._sip import ProbeContext
    from sipwatch.sip.transaction import Timers

    if args.config:
        from sipwatch.config import load_settings

        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            return _fail(str(exc))
        specs = [s for s in settings.probes if not args.name or s.name in args.name]
        if not specs:
            return _fail("no probe selected (check --name against the config's probe names)")
        ctx = settings.context()
    else:
        if not args.uri:
            return _fail("probe needs a URI or --config FILE")
        try:
            specs = [_spec_from_args(args)]
            timers = Timers(t1_s=args.t1, t2_s=max(4.0, args.t1))
        except ValueError as exc:
            return _fail(f"invalid argument: {exc}")
        resolver = None
        if args.dns_server:
            from sipwatch.sip.resolve import ResolverConfig

            host, _, port = (
                args.dns_server.rpartition(":")
                if args.dns_server.count(":") == 1
                else (args.dns_server, "", "53")
            )
            try:
                dns_port = ascii_int(port or "53", "--dns-server port", low=1, high=65535)
                resolver = ResolverConfig(nameservers=(host,), port=dns_port)
            except (ValueError, ConfigError) as exc:
                return _fail(f"invalid argument: {exc}")
        ctx = ProbeContext(timers=timers, resolver=resolver, user_agent=f"sipwatch/{__version__}")

    from sipwatch.secret_files import exposed

    for _, path, mode in exposed(specs):
        print(
            f"sipwatch: warning: password file {path} is readable by others (mode {mode:o});"
            " chmod 600 it",
            file=sys.stderr,
        )
    results: list[ProbeResult] = []
    if len(specs) == 1 and not args.config and not args.force_asyncio:
        # One probe of an IP literal: run it without asyncio (whose import alone costs
        # more than sipsak's whole run). Same flows, same transaction code.
        from sipwatch.probes import kind_of

        probe_now = kind_of(specs[0]).probe_now
        quick = probe_now(specs[0], ctx) if probe_now is not None else None
        if quick is not None:
            results = [quick]
    if not results:
        import asyncio

        results = asyncio.run(_run_all(specs, ctx))
    _print(results, as_json=args.json)
    return max(exit_code_for(str(r.outcome)) for r in results)


async def _run_all(specs: list[Any], ctx: Any) -> list[ProbeResult]:
    import asyncio

    from sipwatch.probes import run_probe

    return list(await asyncio.gather(*(run_probe(s, ctx) for s in specs)))


def _print(results: list[ProbeResult], *, as_json: bool) -> None:
    if as_json:
        import json

        payload: Any = [r.to_dict() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=None))
        return
    for result in results:
        rows = result.targets or (result,)
        for r in rows:
            status = f"{r.status_code} {r.reason}".strip() if r.status_code else "-"
            rtt = f"{r.rtt_ms:.1f} ms" if r.rtt_ms is not None else "-"
            line = (
                f"{r.outcome!s:<11} {r.method or '-':<8} {r.target}  "
                f"[{r.resolved or 'unresolved'}]  {status}  rtt={rtt} "
                f"retrans={r.retransmissions}"
            )
            print(line + (f"  ({r.detail})" if r.detail else ""))


def _cmd_config(args: argparse.Namespace) -> int:
    from sipwatch.config import load_settings
    from sipwatch.errors import ConfigError

    try:
        settings = load_settings(args.file)
    except ConfigError as exc:
        return _fail(str(exc))
    print(
        f"{args.file}: ok, {len(settings.probes)} probe(s): "
        + ", ".join(s.name for s in settings.probes)
    )
    return 0
