"""`make fuzz`: every target (or those named) one after another under atheris, bounded by a
number of inputs and a time per target, then one line per target: inputs run, inputs/s,
crashes. Exit 1 if any target crashed.

    python -m fuzz.campaign [--runs N] [--seconds S] [TARGET...]

Each target's generated corpus grows in .fuzz/work/TARGET (not in git), seeded from
fuzz/corpus/TARGET; crash inputs land in .fuzz/artifacts/TARGET/, libFuzzer's log in
.fuzz/logs/TARGET.log, and the table in .fuzz/results.json. Targets run sequentially: the
machines are shared, and each target gets the whole core libFuzzer uses.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz import TARGETS

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".fuzz"
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_DONE = re.compile(r"Done (\d+) runs in (\d+) second", re.M)


def run_target(name: str, runs: int, seconds: int) -> dict[str, object]:
    work, artifacts, logs = STATE / "work" / name, STATE / "artifacts" / name, STATE / "logs"
    for folder in (work, artifacts, logs):
        folder.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        "fuzz.run",
        name,
        f"-runs={runs}",
        f"-max_total_time={seconds}",
        "-timeout=10",  # one input taking longer is a finding (a hang)
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        str(work),
        str(ROOT / "fuzz" / "corpus" / name),
    ]
    started, wall_start = time.monotonic(), time.time()
    with log.open("w") as out:
        try:
            proc = subprocess.run(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 120
            )
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    stats = {k: int(v) for k, v in _STAT.findall(text)}
    done = _DONE.search(text)
    inputs = stats.get("number_of_executed_units", int(done.group(1)) if done else 0)
    # This run's findings only: artifacts of earlier runs stay for reference.
    crashes = sorted(
        p.name for p in artifacts.iterdir() if p.is_file() and p.stat().st_mtime >= wall_start
    )
    return {
        "target": name,
        "inputs": inputs,
        "seconds": round(elapsed, 1),
        "inputs_per_s": stats.get("average_exec_per_sec", round(inputs / max(elapsed, 1e-9))),
        "crashes": crashes,
        "exit": rc,
        "corpus": sum(1 for _ in work.iterdir()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seconds", type=int, default=900, help="time limit per target")
    parser.add_argument("targets", nargs="*", help=f"default: all of {' '.join(TARGETS)}")
    args = parser.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {' '.join(unknown)}; known: {' '.join(TARGETS)}")
    results = []
    for name in args.targets or TARGETS:
        result = run_target(name, args.runs, args.seconds)
        results.append(result)
        print(
            f"{name:14} {result['inputs']:>10,} inputs {result['inputs_per_s']:>7,}/s "
            f"{result['seconds']:>7.1f} s  crashes: {len(result['crashes'])}"  # type: ignore[arg-type]
            + (f" ({', '.join(result['crashes'])})" if result["crashes"] else ""),  # type: ignore[arg-type]
            flush=True,
        )
    STATE.mkdir(exist_ok=True)
    previous = {}
    results_file = STATE / "results.json"
    if results_file.exists():
        previous = {r["target"]: r for r in json.loads(results_file.read_text())}
    previous.update({r["target"]: r for r in results})
    results_file.write_text(json.dumps(list(previous.values()), indent=2) + "\n")
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
