"""One-shot wall time: `sipwatch probe URI` against `sipsak -s URI`, same Kamailio, same run.

    python bench/oneshot.py [--runs 40] [--json bench/results/oneshot.json]

Each command is run --runs times, alternating, as a fresh process (that is how monitors such
as Pacemaker's agents or Nagios call them). Reports median and p95 wall time per transport,
and the ratio of medians (sipwatch / sipsak). Loopback only; Kamailio is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)

from testbed import start_kamailio


def wall(cmd: list[str]) -> tuple[float, int]:
    """Wall time of one run. A blocking wait plus a watchdog timer, not subprocess's
    `timeout=`: that polls with sleeps growing to 50 ms and would add them to both sides."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        rc = proc.wait()
    finally:
        watchdog.cancel()
    return time.perf_counter() - started, rc


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sipwatch = shutil.which("sipwatch") or str(Path(sys.executable).parent / "sipwatch")
    out: dict[str, object] = {"runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="sipwatch-oneshot-") as tmp:
        kam = start_kamailio(Path(tmp) / "kam", tls=False)
        try:
            for transport in ("udp", "tcp"):
                uri = kam.uri(transport, user="ping")
                # sipsak takes the transport from -E, not from a URI parameter.
                sipsak = ["sipsak", "-s", kam.uri("udp", user="ping")]
                sipsak += ["-E", "tcp"] if transport == "tcp" else []
                ours_cmd = [sipwatch, "probe", uri]
                ours: list[float] = []
                base: list[float] = []
                for _ in range(3):  # warm the page cache for both
                    wall(ours_cmd)
                    wall(sipsak)
                bad = 0
                for _ in range(args.runs):
                    t, rc = wall(ours_cmd)
                    ours.append(t)
                    bad += rc != 0
                    t, rc = wall(sipsak)
                    base.append(t)
                    bad += rc != 0
                row = {
                    "sipwatch_median_ms": statistics.median(ours) * 1000,
                    "sipwatch_p95_ms": p95(ours) * 1000,
                    "sipsak_median_ms": statistics.median(base) * 1000,
                    "sipsak_p95_ms": p95(base) * 1000,
                    "nonzero_exits": bad,
                }
                row["ratio"] = row["sipwatch_median_ms"] / row["sipsak_median_ms"]
                out[transport] = row
                print(
                    f"{transport}: sipwatch median {row['sipwatch_median_ms']:.1f} ms "
                    f"(p95 {row['sipwatch_p95_ms']:.1f})  sipsak median "
                    f"{row['sipsak_median_ms']:.1f} ms (p95 {row['sipsak_p95_ms']:.1f})  "
                    f"ratio {row['ratio']:.2f}x  non-zero exits {bad}"
                )
        finally:
            kam.stop()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
