"""`sipwatch check`: judge this node once and exit with a code that the OCF shim, keepalived's
`track_script` and Nagios-style monitors understand.

Owns: the command's arguments, where the health comes from (`obtain`: the daemon's answer
when one is configured, else probing once here), the exit-code contract and the output
formats. Must not know: how probes work (sipwatch.probes) or how results are judged
(sipwatch.policy). Imports are inside the functions: the parser is built on every run, and
the OCF monitor runs this often.

One-shot semantics (no history, `sipwatch.policy.one_shot`): every configured probe runs
once, concurrently; each result is judged as if its outcome had held long enough to pass
`fall` or `rise` (one failed transaction is down, one answer is up — a SIP probe's failure
already includes the RFC 3261 retransmissions, so one lost datagram does not fail it); the
smoothed RTT is this round's RTT; a 503 with Retry-After is yellow; there is no startup or
takeover grace. blocks_takeover, hung, local_error and standby handling are as always.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

    from sipwatch.config import Settings
    from sipwatch.model import Decision, ProbeResult
    from sipwatch.policy import Policy

from sipwatch.check_fast import DEFAULT_CONFIG
from sipwatch.exitcodes import CHECK_BAD_CONFIG as EXIT_BAD_CONFIG
from sipwatch.exitcodes import CHECK_DEGRADED as EXIT_DEGRADED
from sipwatch.exitcodes import CHECK_FAILED as EXIT_FAILED
from sipwatch.exitcodes import CHECK_MISSING_TOOL as EXIT_MISSING_TOOL
from sipwatch.exitcodes import CHECK_NOT_RUNNING as EXIT_NOT_RUNNING
from sipwatch.exitcodes import CHECK_OK as EXIT_OK
from sipwatch.exitcodes import NAGIOS_CRITICAL, NAGIOS_OK, NAGIOS_UNKNOWN, NAGIOS_WARNING

#: The probe kind whose `down` outcome means "the PBX is not running here" (exit 7).
PBX_PROCESS_KIND = "pbx_process"


EXIT_CODES_HELP = """\
exit codes (text, json, shell; --format nagios exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN):
  0    green: healthy
  1    red: failed (OCF_ERR_GENERIC)
  5    a required tool is missing (OCF_ERR_INSTALLED): a probe result with outcome
       local_error and extra["missing_tool"] naming the binary
  6    bad configuration or policy, or no probe configured (OCF_ERR_CONFIGURED)
  7    the PBX is not running (OCF_NOT_RUNNING): a probe of kind pbx_process says down
  190  yellow: degraded (OCF_DEGRADED)
When several apply, the first in this order wins: 6, 5, 7, then 1, 190 or 0 by verdict.
A local_error without "missing_tool" (unreadable password file, permission) never makes
the verdict red: it is reported (reasons with "local": true, and on stderr) and the exit
code follows the other probes."""


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="probe this node once, apply the policy, exit with an OCF-style code",
        description="Run the configured probes once, concurrently, judge them with the "
        "policy (one-shot: no history, each outcome judged as if it had held long enough "
        "to pass fall/rise; no grace) and report the verdict.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE|NAME",
        help=f"config file, or the name of a shipped probe set (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--policy",
        metavar="NAME|FILE",
        help="policy to apply instead of the config's `policy` key (default: that key)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "nagios", "shell"),
        default="text",
        help="output format (shell: one line of key=value for `read` in a shell script, "
        "as the OCF agent reads it)",
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="probe here even when a sipwatch daemon answers on daemon.http_host:http_port",
    )
    # Set by the command line's fast path (cli.main) once it asked the daemon's GET /check.
    parser.set_defaults(daemon_asked=False)


class Health(NamedTuple):
    """A decision and the results it was made from. `source`: "probed" (this process ran
    every probe once) or "daemon" (the running daemon's answer, from its history).
    `mode`: "one_shot" or "history". (A NamedTuple, not a dataclass: importing dataclasses
    costs the OCF monitor's frequent `check` runs several milliseconds.)"""

    decision: Decision
    results: tuple[ProbeResult, ...]
    source: str
    mode: str


def run(args: argparse.Namespace) -> int:
    from sipwatch.errors import ConfigError

    asked = args.daemon_asked or args.no_daemon or args.policy is not None
    if not asked and args.format in RENDERERS:
        from sipwatch.check_fast import answer_from_daemon

        code = answer_from_daemon(args.config, args.format)
        if code is not None:
            return code

    try:
        settings, policy, policy_file = _load(args.config, args.policy)
    except ConfigError as exc:
        return _config_failed(str(exc), args.format)
    # An explicit --policy may differ from the daemon's: then judge here.
    health = obtain(settings, policy, use_daemon=not args.no_daemon and args.policy is None)
    code = exit_code(health.decision, health.results)
    for reason in health.decision.reasons:
        if reason.local:
            print(f"sipwatch: {reason.probe}: {reason.detail}", file=sys.stderr)
    if args.format == "nagios":
        return _print_nagios(health, code, policy)
    print(RENDERERS[args.format](health, code, policy_file))
    return code


def daemon_answer(
    decision: Decision, results: tuple[ProbeResult, ...], policy_name: str, fmt: str
) -> tuple[int, str]:
    """What `check --format FMT` prints and exits with when the daemon answers, rendered by
    the daemon itself (`GET /check`): the exit code and the output, without its newline.
    Same code as this process's own output, so the two cannot drift."""
    from pathlib import Path

    health = Health(decision, results, source="daemon", mode="history")
    code = exit_code(decision, results)
    return code, RENDERERS[fmt](health, code, Path(policy_name))


def _load(config: str, policy_ref: str | None) -> tuple[Settings, Policy, Path]:
    from sipwatch.catalog import find_config
    from sipwatch.config import load_settings
    from sipwatch.errors import ConfigError
    from sipwatch.policy import load_policy, policy_path

    settings = load_settings(config)
    if not settings.probes:
        raise ConfigError(f"{config}: no probes configured: nothing to check")
    if policy_ref is not None:  # from the command line: relative to the working directory
        path = policy_path(policy_ref)
    else:  # from the config file: relative to that file
        path = policy_path(settings.policy, relative_to=find_config(config).parent)
    return settings, load_policy(path), path


def obtain(settings: Settings, policy: Policy, *, use_daemon: bool = True) -> Health:
    """The node's health: the daemon's answer when it gives one, else probe once here."""
    return (ask_daemon(settings) if use_daemon else None) or probe_once(settings, policy)


def ask_daemon(settings: Settings) -> Health | None:
    """The running daemon's answer (source "daemon", mode "history": the policy applied to
    its history, grace and hysteresis included), or None when no daemon answers on
    `daemon.http_host:http_port` within the client's bounds (sipwatch.status_client), has
    not probed everything yet, or runs other probes than this config names (then its
    verdict is not about this config)."""
    d = settings.daemon
    if not d.http_port:
        return None
    status = _daemon_status(d.http_host, d.http_port)
    if status is None:
        return None
    return _health_from_status(status, {s.name for s in settings.probes})


def _daemon_status(host: str, port: int) -> dict[str, Any] | None:
    """The daemon's /status, or None when there is none to be had: no daemon, too slow,
    too big, not JSON (the client's bounds and errors: sipwatch.status_client)."""
    from sipwatch.errors import DaemonStatusError
    from sipwatch.status_client import get_status

    try:
        return get_status(host, port)
    except DaemonStatusError:
        return None  # no daemon (or none we can use): probe here instead


def _health_from_status(status: dict[str, Any], names: set[str]) -> Health | None:
    """The daemon's answer as a Health, or None when it is not one about `names` (another
    config, still starting) or is malformed: then check probes by itself."""
    from sipwatch.model import Decision, ProbeResult

    probes = status.get("probes")
    if status.get("source") != "daemon" or not isinstance(probes, dict) or set(probes) != names:
        return None
    if not all(isinstance(p, dict) for p in probes.values()):
        return None
    lasts = [p.get("last") for p in probes.values()]
    if any(last is None for last in lasts):
        return None  # still starting: not every probe has run
    try:
        decision = Decision.from_dict(status)
        results = tuple(ProbeResult.from_dict(last) for last in lasts)
    except ValueError:
        return None  # not our daemon, or an incompatible one: probe here instead
    return Health(decision, results, source="daemon", mode="history")


def probe_once(settings: Settings, policy: Policy) -> Health:
    import asyncio
    import time

    from sipwatch.policy import one_shot

    results = asyncio.run(_run_all(list(settings.probes), settings))
    decision = one_shot(results, policy, now=time.monotonic())
    return Health(decision, tuple(results), source="probed", mode="one_shot")


async def _run_all(specs: list[Any], settings: Settings) -> list[ProbeResult]:
    import asyncio

    from sipwatch.probes import run_probe

    ctx = settings.context()
    return list(await asyncio.gather(*(run_probe(s, ctx) for s in specs)))


def _every(results: tuple[ProbeResult, ...]) -> list[ProbeResult]:
    """The results and, for multi-target SIP probes, each target's own result."""
    out: list[ProbeResult] = []
    for r in results:
        out.append(r)
        out.extend(r.targets)
    return out


def missing_tools(results: tuple[ProbeResult, ...]) -> list[str]:
    """Binaries that probes reported missing (local_error + extra["missing_tool"])."""
    from sipwatch.model import EXTRA_MISSING_TOOL, Outcome

    return sorted(
        {
            str(r.extra[EXTRA_MISSING_TOOL])
            for r in _every(results)
            if r.outcome is Outcome.LOCAL_ERROR and r.extra.get(EXTRA_MISSING_TOOL)
        }
    )


def pbx_not_running(results: tuple[ProbeResult, ...]) -> bool:
    from sipwatch.model import Outcome

    return any(r.kind == PBX_PROCESS_KIND and r.outcome is Outcome.DOWN for r in results)


def exit_code(decision: Decision, results: tuple[ProbeResult, ...]) -> int:
    """The exit-code contract (EXIT_CODES_HELP), apart from 6 which is raised earlier."""
    from sipwatch.model import Verdict

    if missing_tools(results):
        return EXIT_MISSING_TOOL
    if pbx_not_running(results):
        return EXIT_NOT_RUNNING
    return {Verdict.GREEN: EXIT_OK, Verdict.YELLOW: EXIT_DEGRADED, Verdict.RED: EXIT_FAILED}[
        decision.verdict
    ]


def _config_failed(message: str, fmt: str) -> int:
    print(f"sipwatch: {message}", file=sys.stderr)
    if fmt == "json":
        import json

        print(json.dumps({"verdict": None, "error": message, "exit_code": EXIT_BAD_CONFIG}))
    elif fmt == "nagios":
        print(f"SIPWATCH UNKNOWN - {message.splitlines()[0]}")
        return NAGIOS_UNKNOWN
    elif fmt == "shell":
        print(f"verdict= code={EXIT_BAD_CONFIG} reason={_shell_text(message)}")
    return EXIT_BAD_CONFIG


#: `--format shell`: the longest reason printed (as in the verdict file).
SHELL_REASON_MAX = 200


def _shell_text(text: str) -> str:
    """`text` as one single-quoted shell word: printable ASCII only (anything else, a
    newline included, becomes a space), `'` turned into `"`, at most SHELL_REASON_MAX
    characters. Safe for `eval` and, since it is the line's last field, for `read`."""
    clean = "".join(c if " " <= c <= "~" else " " for c in text).replace("'", '"')
    return "'" + clean[:SHELL_REASON_MAX] + "'"


def shell_line(health: Health, code: int) -> str:
    """The `--format shell` line (see docs/policies.md): key=value fields separated by one
    space, in this order, every value but reason's from [a-z0-9]; reason is last and
    single-quoted (_shell_text). A configuration error prints `verdict= code=6 reason=...`."""
    d = health.decision
    reason = d.reasons[0].text if d.reasons else ""
    return (
        f"verdict={d.verdict} code={code} score={d.score} eligible={int(d.eligible)} "
        f"active={int(d.active)} source={health.source} reason={_shell_text(reason)}"
    )


def render_shell(health: Health, code: int, policy_file: Path) -> str:
    return shell_line(health, code)


def render_json(health: Health, code: int, policy_file: Path) -> str:
    import json

    d = health.decision
    payload = {
        "verdict": str(d.verdict),
        "score": d.score,
        "eligible": d.eligible,
        "active": d.active,
        "reasons": d.to_dict()["reasons"],
        "exit_code": code,
        "missing_tools": missing_tools(health.results),
        "source": health.source,
        "mode": health.mode,
        "policy": str(policy_file),
        "probes": [r.to_dict() for r in health.results],
    }
    return json.dumps(payload)


def render_text(health: Health, code: int, policy_file: Path) -> str:
    d = health.decision
    where = "probed once" if health.source == "probed" else f"from the {health.source}"
    lines = [
        f"{str(d.verdict).upper()}  score {d.score}  "
        f"{'eligible' if d.eligible else 'NOT ELIGIBLE to run the PBX'}  "
        f"{'active' if d.active else 'standby'}  (exit {code}; {where}; "
        f"policy {policy_file})"
    ]
    for r in health.results:
        status = f"{r.status_code} {r.reason}".strip() if r.status_code else "-"
        rtt = f"{r.rtt_ms:.1f} ms" if r.rtt_ms is not None else "-"
        lines.append(f"  {r.probe:<20} {r.outcome!s:<11} {status:<16} rtt {rtt:<10} {r.resolved}")
    if d.reasons:
        lines.append("reasons:")
    for reason in d.reasons:
        tag = "LOCAL" if reason.local else reason.effect
        lines.append(
            f"  {tag:<6} {reason.probe or '(score)':<20} {reason.outcome:<11} {reason.detail}"
        )
    return "\n".join(lines)


#: The formats whose output is the same whoever renders it, this process or the daemon
#: (`GET /check`, sipwatch.check_fast); nagios needs the policy file's thresholds.
RENDERERS = {"text": render_text, "json": render_json, "shell": render_shell}


def _nagios_label(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _print_nagios(health: Health, code: int, policy: Policy) -> int:
    """One line, Nagios plugin style, with perfdata; returns the Nagios exit code."""
    from sipwatch.model import Verdict

    d = health.decision
    tools = missing_tools(health.results)
    local = [r for r in d.reasons if r.local]
    if tools:
        state, summary = NAGIOS_UNKNOWN, f"missing tool(s): {', '.join(tools)}"
    elif code == EXIT_NOT_RUNNING:
        state, summary = NAGIOS_CRITICAL, "PBX not running"
    elif d.verdict is Verdict.RED:
        state, summary = NAGIOS_CRITICAL, "red"
    elif d.verdict is Verdict.YELLOW or local:
        state, summary = NAGIOS_WARNING, str(d.verdict)
    else:
        state, summary = NAGIOS_OK, "green"
    names = {NAGIOS_OK: "OK", NAGIOS_WARNING: "WARNING", NAGIOS_CRITICAL: "CRITICAL"}
    text = f"SIPWATCH {names.get(state, 'UNKNOWN')} - {summary}, score {d.score}"
    shown = [r for r in d.reasons if r.effect != "none" or r.local][:3]
    if shown:
        text += ": " + "; ".join(f"{r.probe or 'score'} {r.outcome}" for r in shown)
    perf = [
        f"'score'={d.score};{policy.score_yellow_below}:;{policy.score_red_below}:;0;100",
    ]
    for r in health.results:
        if r.rtt_ms is None:
            continue
        warn = policy.rule_for(r.probe, r.kind).rtt_yellow_ms
        threshold = f"{warn:g}" if warn else ""
        perf.append(f"{_nagios_label(r.probe + '_rtt')}={r.rtt_ms:g}ms;{threshold};;0;")
    print(f"{text} | {' '.join(perf)}")
    return state
