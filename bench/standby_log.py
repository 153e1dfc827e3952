"""Log volume of a healthy lab (testbed.lab): lines per hour that each node's
`sipwatch run` writes while nothing is wrong, standbys and the active node apart. Root only.

    .venv/bin/python bench/standby_log.py [--seconds 120] [--warmup 20]
        [--out bench/results/standby_log.json]

A healthy standby's normal state ("PBX not running", "VIP not held here") is not news: it
should cost a few lines at start, not two a second (issue 10 measured 782 lines in 7 min).
The count is taken over `--seconds` after `--warmup` (start-up lines excluded) and scaled
to an hour; the lines themselves are printed by event name.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)

from testbed.lab import NODES, LabConfig, lab_up


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--warmup", type=float, default=20.0)
    p.add_argument("--out", type=Path, default=Path("bench/results/standby_log.json"))
    args = p.parse_args(argv)
    with lab_up(LabConfig(mode="sipwatch")) as lab:
        active = lab.active()
        time.sleep(args.warmup)
        logs = {n: lab.nodes[n].dir / "sipwatch.log" for n in NODES}
        before = {n: len(_lines(path)) for n, path in logs.items()}
        time.sleep(args.seconds)
        result: dict[str, object] = {"seconds": args.seconds, "active": active, "nodes": {}}
        for n, path in logs.items():
            new = _lines(path)[before[n] :]
            events = collections.Counter(
                m.group(1) for ln in new if (m := re.search(r"event=(\w+)", ln))
            )
            per_hour = len(new) * 3600.0 / args.seconds
            role = "active" if n == active else "standby"
            result["nodes"][n] = {  # type: ignore[index]
                "role": role,
                "lines": len(new),
                "lines_per_hour": round(per_hour),
                "events": dict(events),
            }
            print(f"{n} ({role}): {len(new)} lines in {args.seconds:.0f} s = "
                  f"{per_hour:.0f}/h {dict(events)}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
