"""Failover benchmark on the real three-node lab (testbed.lab): for each fault, the
time from injection on the active node to the client's OPTIONS via the VIP answered (200) by
another node; N repetitions; p50/p95/max. Root only.

Setups, each in its own lab bring-up in this run:
    sipwatch      ocf:sipwatch:labpbx (1 s monitor, SIGKILL of a hung group at stop) +
                  `sipwatch run` publishing #health-sipwatch (migrate-on-red), 1 s probes,
                  the quorum guard on, confirm runs on (the lab policy: shipped "fast")
    sipwatch-noconfirm  the same with the policy's confirm_interval_s = 0: the baseline
                  for the confirm-at-once gain
    fencing       as sipwatch, with STONITH (fence_swlab, the lab's power controller) and
                  the quorum guard off; faults crash,hang,503,drop,partition,power_off
    shim          the same PBX agent; the OCF shim ocf:sipwatch:sipwatch (mode=service,
                  OCF_CHECK_LEVEL=10, 1 s monitor) in the group asks `sipwatch run` (agent none)
    stock-10s     ocf:heartbeat:kamailio, sipsak monitor every 10 s, migration-threshold=1,
                  monitor and stop timeouts 30 s (the baseline in ../shared/docs/pacemaker-lab.md)
    stock-2s      the same with a 2 s monitor

    .venv/bin/python bench/failover.py [-n 10] [--n-slow 5] [--setups ...] [--faults ...]
        [--out bench/results/failover.json]

Where a fault falls in the monitor cycle decides most of the stock agent's time, so each
injection waits a random 0..monitor-interval first (uniform), after a settle time: for the
sipwatch setups the lab policy's takeover grace (3 s; inside it sipwatch deliberately leaves
a just-moved group to Pacemaker's own monitor). "slow" faults (hang, drop) on the stock
setups cost about a minute each, so they get --n-slow repetitions.
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

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)

from testbed.lab import Lab, LabConfig, lab_up
from testbed.process import TestbedError

SETUPS = {
    "sipwatch": LabConfig(mode="sipwatch", monitor_interval_s=1.0, stop_timeout_s=10.0),
    "shim": LabConfig(mode="shim", monitor_interval_s=1.0, stop_timeout_s=10.0),
    # The same as "sipwatch" with the policy's confirm runs off (every probe run on its 1 s
    # interval): the baseline for the confirm-at-once gain (issue 15).
    "sipwatch-noconfirm": LabConfig(
        mode="sipwatch", monitor_interval_s=1.0, stop_timeout_s=10.0, confirm_interval_s=0.0
    ),
    # STONITH on (fence_swlab + the lab's power controller), the quorum guard off: what
    # fencing alone makes safe (issue 14)
    "fencing": LabConfig(
        mode="fencing", monitor_interval_s=1.0, stop_timeout_s=10.0, quorum_guard=False
    ),
    "stock-10s": LabConfig(mode="stock", monitor_interval_s=10.0, stop_timeout_s=30.0),
    "stock-2s": LabConfig(mode="stock", monitor_interval_s=2.0, stop_timeout_s=30.0),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


SETTLE_S = {
    "sipwatch": 3.2,
    "shim": 3.2,
    "sipwatch-noconfirm": 3.2,
    "fencing": 3.2,
}  # past the lab policy's takeover grace (3 s)
SLOW = ("hang", "drop")  # a minute each for the stock agent


def placement_before(lab: Lab) -> dict[str, object]:
    """Where the cluster's DC and the fence device are just before a fault: a lost DC means
    an election first, which is one suspect for a slow failover."""
    try:
        root = lab.crm_mon()
    except TestbedError as exc:
        return {"dc": None, "st_pdu": [], "error": str(exc)}
    dc = root.find("summary/current_dc")
    return {
        "dc": dc.get("name") if dc is not None else None,
        "st_pdu": lab.placement("st_pdu") if lab.config.mode == "fencing" else [],
    }


def run_setup(
    name: str, faults: list[str], n: int, n_slow: int, timeout_s: float, rng: random.Random
) -> dict[str, object]:
    config = SETUPS[name]
    with lab_up(config) as lab:
        out: dict[str, object] = {"bring_up_s": round(lab.up_s, 2)}
        for fault in faults:
            times: list[float] = []
            trials: list[dict[str, object]] = []
            overlaps = 0
            reps = n_slow if fault in SLOW and config.mode == "stock" else n
            for i in range(reps):
                lab.reset(timeout_s=90)
                time.sleep(SETTLE_S.get(name, 0.0) + rng.uniform(0, config.monitor_interval_s))
                where = placement_before(lab)
                f = lab.measure_failover(fault, timeout_s=timeout_s)
                times.append(f.seconds)
                trials.append({"seconds": round(f.seconds, 3), "old": f.old, "new": f.new, **where})
                overlaps += f.max_holders > 1
                print(f"{name:10} {fault:6} #{i + 1}: {f.old}->{f.new} {f.seconds:6.2f} s "
                      f"(VIP holders {f.holders})", flush=True)  # fmt: skip
            out[fault] = {
                "n": reps,
                "seconds": [round(t, 3) for t in times],
                "p50": round(statistics.median(times), 3),
                "p95": round(pct(times, 0.95), 3),
                "max": round(max(times), 3),
                "vip_on_two_nodes": overlaps,
                "trials": trials,
            }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--n-slow", type=int, default=5, help="repetitions of hang/drop, stock")
    p.add_argument("--setups", default="sipwatch,shim,fencing,stock-10s,stock-2s")
    p.add_argument("--faults", default="crash,hang,503,drop,partition")
    p.add_argument("--seed", type=int, default=None, help="for the random injection phase")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--out", type=Path, default=Path("bench/results/failover.json"))
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/failover.py needs root (namespaces, mounts)", file=sys.stderr)
        return 2
    faults = args.faults.split(",")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    results: dict[str, object] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n": args.n,
        "n_slow": args.n_slow,
        "seed": seed,
    }
    for setup in args.setups.split(","):
        results[setup] = run_setup(setup, faults, args.n, args.n_slow, args.timeout, rng)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    heads = " | ".join(f"{f} p50 / p95 / max (s)" for f in faults)
    print(f"| setup | {heads} | runs with the VIP on two nodes |")
    for setup in args.setups.split(","):
        row = results[setup]
        assert isinstance(row, dict)
        cells = [
            f"{row[f]['p50']:.2f} / {row[f]['p95']:.2f} / {row[f]['max']:.2f}" if f in row else "-"
            for f in faults
        ]
        two = sum(row[f]["vip_on_two_nodes"] for f in faults if f in row)
        runs = sum(row[f]["n"] for f in faults if f in row)
        print(f"| {setup} | {' | '.join(cells)} | {two} of {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
