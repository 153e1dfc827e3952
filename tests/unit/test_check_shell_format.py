"""`sipwatch check --format shell` and the OCF agent's side of it: the line, read back by the
agent's own shell functions (run in sh, not re-implemented), the agent's colour table held
against sipwatch.exitcodes, and the daemon's answer rebuilt or refused (never a traceback)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import sipwatch
from sipwatch import exitcodes
from sipwatch.commands.check import Health, _health_from_status, shell_line
from sipwatch.model import Decision, Outcome, ProbeResult, Reason, Verdict

AGENT = Path(sipwatch.__file__).parent / "ocf" / "sipwatch"
SHELLS = [s for s in ("sh", "dash", "bash") if shutil.which(s)]


def agent_function(name: str) -> str:
    match = re.search(rf"^{name}\(\) {{\n.*?^}}\n", AGENT.read_text(), re.M | re.S)
    assert match, f"{name} not found in {AGENT}"
    return match.group(0)


def run_sh(shell: str, script: str) -> str:
    done = subprocess.run(
        [shell, "-c", script], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def health(*reasons: Reason, verdict: Verdict = Verdict.RED, score: int = 0) -> Health:
    result = ProbeResult("pbx-udp", "sip_options", "sip:x", Outcome.TIMEOUT)
    return Health(Decision(verdict, score, reasons), (result,), source="daemon", mode="history")


def test_the_line() -> None:
    line = shell_line(health(Reason("pbx-udp", "timeout", 1.0, detail="no answer")), 1)
    assert line == (
        "verdict=red code=1 score=0 eligible=1 active=1 source=daemon reason='no answer'"
    )
    assert shell_line(health(verdict=Verdict.GREEN, score=100), 0).endswith("reason=''")
    # No detail: "probe outcome", as in the verdict file.
    assert shell_line(health(Reason("pbx-udp", "timeout", 1.0)), 1).endswith(
        "reason='pbx-udp timeout'"
    )


NASTY = [
    ("quotes", 'it\'s "down"; rm -rf / `x` $(y) \\n', 'it"s "down"; rm -rf / `x` $(y) \\n'),
    ("newline and tab", "line one\nline two\tend\r", "line one line two end "),
    ("non-ASCII", "réponse ✓ 503", "r ponse   503"),
    ("long", "x" * 500, "x" * 200),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("detail", "expected"), [n[1:] for n in NASTY], ids=[n[0] for n in NASTY])
def test_the_agent_reads_the_line_back(shell: str, detail: str, expected: str) -> None:
    line = shell_line(health(Reason("pbx-udp", "timeout", 1.0, detail=detail)), 1)
    assert "\n" not in line
    script = agent_function("sipwatch_parse_check_line") + (
        "CHECK_VERDICT='' CHECK_REASON=''\nsipwatch_parse_check_line \"$1\"\n"
        'printf "%s|%s" "$CHECK_VERDICT" "$CHECK_REASON"\n'
    )
    done = subprocess.run(
        [shell, "-c", script, "sh", line], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.stdout == f"red|{expected}", done.stderr
    # ...and it is safe for eval, which gives the same reason.
    assert run_sh(shell, f'eval "$(cat <<\'EOF\'\n{line}\nEOF\n)"; printf %s "$reason"') == (
        expected
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_the_agents_colour_table_is_exitcodes(shell: str) -> None:
    """One table: exitcodes.CHECK_COLOUR. The agent's copy (sipwatch_colour_of, builtins only
    for its fast monitor) must give the same colour for every exit code, "" for the rest."""
    script = agent_function("sipwatch_colour_of") + (
        'i=0; while [ "$i" -le 255 ]; do sipwatch_colour_of "$i"; echo "$i=$COLOUR"; '
        "i=$((i + 1)); done\n"
    )
    table = dict(line.split("=") for line in run_sh(shell, script).split())
    assert {int(k): v for k, v in table.items() if v} == exitcodes.CHECK_COLOUR
    checks = {
        v for k, v in vars(exitcodes).items() if k.startswith("CHECK_") and isinstance(v, int)
    }
    assert checks - set(exitcodes.CHECK_COLOUR) == {
        exitcodes.CHECK_MISSING_TOOL,
        exitcodes.CHECK_BAD_CONFIG,
    }  # the local errors: never published


def test_the_agent_has_no_json_parsing() -> None:
    code = "\n".join(ln for ln in AGENT.read_text().splitlines() if not ln.lstrip().startswith("#"))
    assert "--json" not in code and not re.search(r"\bsed\b", code)
    assert 'check --config "$OCF_RESKEY_config" --format shell' in code


GOOD: dict[str, Any] = {
    **Decision(Verdict.GREEN, 100).to_dict(),
    "source": "daemon",
    "probes": {"pbx": {"last": ProbeResult("pbx", "k", "t", Outcome.OK).to_dict()}},
}


def test_the_daemons_answer_is_rebuilt() -> None:
    got = _health_from_status(GOOD, {"pbx"})
    assert got is not None
    assert got.decision == Decision(Verdict.GREEN, 100)
    assert got.results == (ProbeResult("pbx", "k", "t", Outcome.OK),)


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("probes not an object", {**GOOD, "probes": ["pbx"]}),
    ("probe entry not an object", {**GOOD, "probes": {"pbx": "ok"}}),
    ("last not an object", {**GOOD, "probes": {"pbx": {"last": 5}}}),
    ("last without outcome", {**GOOD, "probes": {"pbx": {"last": {"probe": "pbx"}}}}),
    ("verdict missing", {k: v for k, v in GOOD.items() if k != "verdict"}),
    ("score as text", {**GOOD, "score": "100"}),
    ("reasons not a list", {**GOOD, "reasons": 3}),
    ("not from a daemon", {**GOOD, "source": "probed"}),
    ("other probes", {**GOOD, "probes": {"other": GOOD["probes"]["pbx"]}}),
    ("still starting", {**GOOD, "probes": {"pbx": {"last": None}}}),
]


@pytest.mark.parametrize("status", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_answer_is_not_used(status: dict[str, Any]) -> None:
    assert _health_from_status(status, {"pbx"}) is None
