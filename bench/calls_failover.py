"""Established calls through a failover, sipwatch vs the stock agent, on the real lab.

For each setup (its own lab bring-up, `LabConfig(calls=True)`) and each fault: R repetitions
of Lab.measure_calls — N UDP calls through the VIP to the IVR (sipp, RTP echo), each
refreshed by an UPDATE every 0.15 s, the fault on the active node; per repetition the calls
kept (a refresh answered through the new node, BYE 200), whether the new node's PBX listed
them (dialog replication: sipwatch setup only, see docs/lab.md), each call's signalling gap
(last refresh answered before the fault -> first after) and media gap (largest RTP echo
inter-arrival). Root only.

    .venv/bin/python bench/calls_failover.py [--calls 10] [-r 5] [--setups sipwatch,stock-2s]
        [--faults crash,hang,503,drop,power_off,partition] [--out bench/results/calls-failover.json]

The stock setup (ocf:heartbeat:kamailio, sipsak monitor every 2 s) takes about a minute per
hang and half a minute per drop: that is what it costs the calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)
from failover import pct  # bench/failover.py: the same percentile for every lab bench

from testbed.lab import LabConfig, lab_up

SETUPS = {
    "sipwatch": LabConfig(mode="sipwatch", monitor_interval_s=1.0, calls=True),
    "stock-2s": LabConfig(mode="stock", monitor_interval_s=2.0, stop_timeout_s=30.0, calls=True),
}
SETTLE_S = {"sipwatch": 3.2}  # past the lab policy's takeover grace (3 s)


def run_setup(
    name: str, faults: list[str], calls: int, reps: int, rng: random.Random
) -> dict[str, object]:
    config = SETUPS[name]
    out: dict[str, object] = {}
    with lab_up(config) as lab:
        out["bring_up_s"] = round(lab.up_s, 2)
        for fault in faults:
            runs: list[dict[str, Any]] = []
            for i in range(reps):
                lab.reset(timeout_s=90)
                time.sleep(SETTLE_S.get(name, 0.0) + rng.uniform(0, config.monitor_interval_s))
                s = lab.measure_calls(fault, calls).summary()
                runs.append(s)
                print(f"{name:9} {fault:9} #{i + 1}: {s['old']}->{s['new']} "
                      f"failover {s['failover_s']:6.2f} s, kept {s['kept']}/{s['calls']}, "
                      f"known {s['known_by_new_node']}, gap max {s['signalling_gap_max_s']} s, "
                      f"media gap max {s['media_gap_max_s']} s", flush=True)  # fmt: skip
            gaps = [g for r in runs for g in r["signalling_gap_s"]]
            media = [r["media_gap_max_s"] for r in runs if r["media_gap_max_s"] is not None]
            placed = sum(int(r["calls"]) for r in runs)
            kept = sum(int(r["kept"]) for r in runs)
            out[fault] = {
                "repetitions": reps,
                "calls_placed": placed,
                "calls_kept": kept,
                "kept_pct": round(100.0 * kept / placed, 1) if placed else None,
                "known_by_new_node": sum(int(r["known_by_new_node"]) for r in runs),
                "signalling_gap_p50_s": round(statistics.median(gaps), 3) if gaps else None,
                "signalling_gap_p95_s": round(pct(gaps, 0.95), 3) if gaps else None,
                "signalling_gap_max_s": round(max(gaps), 3) if gaps else None,
                "media_gap_max_s": round(max(media), 3) if media else None,
                "failover_p50_s": round(statistics.median(r["failover_s"] for r in runs), 3),
                "vip_on_two_nodes": sum(bool(r["vip_on_two_nodes"]) for r in runs),
                "runs": runs,
            }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("-r", "--repetitions", type=int, default=5)
    p.add_argument("--setups", default="sipwatch,stock-2s")
    p.add_argument("--faults", default="crash,hang,503,drop,power_off,partition")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench/results/calls-failover.json"))
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/calls_failover.py needs root (namespaces, mounts)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    faults = args.faults.split(",")
    results: dict[str, object] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "calls": args.calls,
        "repetitions": args.repetitions,
        "seed": seed,
    }
    for setup in args.setups.split(","):
        results[setup] = run_setup(setup, faults, args.calls, args.repetitions, rng)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("| setup | fault | calls kept | new node knew | signalling gap p50 / p95 / max (s) "
          "| media gap max (s) | failover p50 (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for setup in args.setups.split(","):
        row = results[setup]
        assert isinstance(row, dict)
        for f in faults:
            r = row[f]
            print(f"| {setup} | {f} | {r['calls_kept']}/{r['calls_placed']} "
                  f"({r['kept_pct']} %) | {r['known_by_new_node']} | "
                  f"{r['signalling_gap_p50_s']} / {r['signalling_gap_p95_s']} / "
                  f"{r['signalling_gap_max_s']} | {r['media_gap_max_s']} | "
                  f"{r['failover_p50_s']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
