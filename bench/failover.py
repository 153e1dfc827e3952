"""Failover benchmark on the real three-node lab (sipwatch.testbed.lab): for each fault, the
time from injection on the active node to the client's OPTIONS via the VIP answered (200) by
another node; N repetitions; p50/p95/max. Root only.

Setups, each in its own lab bring-up in this run:
    sipwatch      ocf:sipwatch:labpbx (1 s monitor, SIGKILL of a hung group at stop) +
                  `sipwatch run` publishing #health-sipwatch (migrate-on-red), 1 s probes
    stock-10s     ocf:heartbeat:kamailio, sipsak monitor every 10 s, migration-threshold=1,
                  monitor and stop timeouts 30 s (the baseline in ../shared/docs/pacemaker-lab.md)
    stock-2s      the same with a 2 s monitor

    .venv/bin/python bench/failover.py [-n 5] [--setups sipwatch,stock-10s,stock-2s]
        [--faults crash,hang,503,drop] [--out bench/results/failover.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from sipwatch.testbed.lab import STATE_FILE, Lab, LabConfig

SETUPS = {
    "sipwatch": LabConfig(mode="sipwatch", monitor_interval_s=1.0, stop_timeout_s=10.0),
    "stock-10s": LabConfig(mode="stock", monitor_interval_s=10.0, stop_timeout_s=30.0),
    "stock-2s": LabConfig(mode="stock", monitor_interval_s=2.0, stop_timeout_s=30.0),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_setup(name: str, faults: list[str], n: int, timeout_s: float) -> dict[str, object]:
    lab = Lab(SETUPS[name])
    lab.up()
    out: dict[str, object] = {"bring_up_s": round(lab.up_s, 2)}
    try:
        for fault in faults:
            times: list[float] = []
            overlaps = 0
            for i in range(n):
                lab.reset(timeout_s=90)
                f = lab.measure_failover(fault, timeout_s=timeout_s)
                times.append(f.seconds)
                overlaps += f.max_holders > 1
                print(f"{name:10} {fault:6} #{i + 1}: {f.old}->{f.new} {f.seconds:6.2f} s "
                      f"(VIP holders {f.holders})", flush=True)  # fmt: skip
            out[fault] = {
                "n": n,
                "seconds": [round(t, 3) for t in times],
                "p50": round(statistics.median(times), 3),
                "p95": round(pct(times, 0.95), 3),
                "max": round(max(times), 3),
                "vip_on_two_nodes": overlaps,
            }
    finally:
        lab.down()
        STATE_FILE.unlink(missing_ok=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--setups", default="sipwatch,stock-10s,stock-2s")
    p.add_argument("--faults", default="crash,hang,503,drop")
    p.add_argument(
        "--stock-faults",
        default="crash,hang",
        help="faults for the stock setups (each hang/drop costs about a minute)",
    )
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--out", type=Path, default=Path("bench/results/failover.json"))
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/failover.py needs root (namespaces, mounts)", file=sys.stderr)
        return 2
    faults = args.faults.split(",")
    results: dict[str, object] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "n": args.n}
    for setup in args.setups.split(","):
        mine = faults if setup == "sipwatch" else args.stock_faults.split(",")
        results[setup] = run_setup(setup, mine, args.n, args.timeout)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"| setup | {' | '.join(f'{f} p50 / p95 / max (s)' for f in faults)} |")
    for setup in args.setups.split(","):
        row = results[setup]
        assert isinstance(row, dict)
        cells = [
            f"{row[f]['p50']:.2f} / {row[f]['p95']:.2f} / {row[f]['max']:.2f}" if f in row else "-"
            for f in faults
        ]
        print(f"| {setup} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
