"""keepalived failover benchmark on a real VRRP pair in two network namespaces
(tests/functional/vrrp_pair.py; root): the time from node A's track file turning red (the
atomic rename `sipwatch run` does) to the VIP on node B alone, polling `ip -n B addr` every
5 ms; N repetitions, p50/p95/max. Between runs the file goes back to 0 and the VIP back to A
(higher priority, preempting); each injection then waits a random 0..advert_int (1 s), so
where it falls in the advertisement cycle is sampled, not fixed.

    .venv/bin/python bench/keepalived.py [-n 5] [--seed S] [--out bench/results/keepalived.json]

This is keepalived's half of a sipwatch failover: add sipwatch's detection (about `fall` x
the probe deadline with confirm runs, see bench/failover.py) for the whole.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "functional"))

from vrrp_pair import vrrp_pair, why_not, write_atomically


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _version() -> str:
    done = subprocess.run(["keepalived", "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout + done.stderr).splitlines()[0]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench/results/keepalived.json"))
    args = p.parse_args()
    reason = why_not()
    if reason:
        print(f"bench/keepalived.py: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    times: list[float] = []
    back: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sipwatch-ka-") as tmp, vrrp_pair(Path(tmp)) as pair:
        pair.wait_holder("A", timeout_s=15)
        track = pair.track_file("A")
        for i in range(args.n):
            time.sleep(1.5 + rng.uniform(0, 1.0))  # settle, then a random advert phase
            write_atomically(track, "1\n")
            seconds = pair.wait_holder("B", timeout_s=15)
            times.append(seconds)
            time.sleep(0.5)
            write_atomically(track, "0\n")
            back.append(pair.wait_holder("A", timeout_s=15))
            print(f"#{i + 1}: A->B {seconds:.3f} s, back B->A {back[-1]:.3f} s", flush=True)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "keepalived": _version(),
        "check": "track_file weight 0, advert_int 1",
        "n": args.n,
        "seed": seed,
        "failover_s": [round(t, 3) for t in times],
        "p50": round(statistics.median(times), 3),
        "p95": round(pct(times, 0.95), 3),
        "max": round(max(times), 3),
        "back_s": [round(t, 3) for t in back],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"failover A->B (track file red -> VIP on B), N={args.n}: p50 {result['p50']:.3f} s, "
          f"p95 {result['p95']:.3f} s, max {result['max']:.3f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
