"""SIP over WebSocket beside TCP and TLS: RTT, in-process probe time, one-shot wall time, and
200 concurrent WSS probes — one Kamailio, one run.

    python bench/ws.py [--rtt-runs 200] [--oneshot-runs 30] [--json bench/results/ws.json]

- `rtt`: the probe's own `rtt_ms` (first send to final response, RFC 3261 §17.1.2), and the
  in-process wall time of a whole probe (connect, TLS and WebSocket handshakes, OPTIONS,
  close), each probe on a fresh connection, through the blocking driver (what a one-shot run
  uses) and the asyncio one (what the daemon uses), alternating transports.
- `oneshot`: `sipwatch probe URI` as a fresh process (how Pacemaker agents and Nagios call
  it), alternating transports; the WS/WSS ratios are against TCP and TLS of the same run.
- `concurrent`: rounds of 200 WSS probes at once on one event loop; every one must be ok.

Medians, p95 and ratios of medians. Loopback only; Kamailio is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)
from oneshot import wall  # bench/ is the script's directory: the same watchdog-timed runner

from sipwatch.model import Outcome
from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_options import SipOptionsSpec, probe_now
from testbed import start_kamailio
from testbed.kamailio import KamailioPeer

TRANSPORTS = ("tcp", "tls", "ws", "wss")
PAIRS = (("ws", "tcp"), ("wss", "tls"))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(values), "p95_ms": p95(values), "n": len(values)}


def spec(kam: KamailioPeer, transport: str) -> SipOptionsSpec:
    ca = {"tls_ca_file": str(kam.cert_file)} if transport in ("tls", "wss") else {}
    return SipOptionsSpec(uri=kam.uri(transport, user="ping"), timeout_s=5.0, **ca)


def bench_rtt(kam: KamailioPeer, runs: int) -> tuple[dict[str, object], int]:
    ctx = ProbeContext()
    specs = {t: spec(kam, t) for t in TRANSPORTS}
    rtt: dict[str, dict[str, list[float]]] = {
        d: {t: [] for t in TRANSPORTS} for d in ("blocking", "asyncio")
    }
    probe_ms: dict[str, dict[str, list[float]]] = {
        d: {t: [] for t in TRANSPORTS} for d in ("blocking", "asyncio")
    }
    bad = 0

    async def one_async(s: SipOptionsSpec) -> tuple[float, object]:
        started = time.perf_counter()
        r = await run_probe(s, ctx)
        return time.perf_counter() - started, r

    loop = asyncio.new_event_loop()
    try:
        for t in TRANSPORTS:  # warm up: imports, TLS contexts, Kamailio's workers
            probe_now(specs[t], ctx)
            loop.run_until_complete(one_async(specs[t]))
        for _ in range(runs):
            for t in TRANSPORTS:
                started = time.perf_counter()
                r = probe_now(specs[t], ctx)
                took = time.perf_counter() - started
                assert r is not None
                if r.outcome is not Outcome.OK or r.rtt_ms is None:
                    bad += 1
                    continue
                rtt["blocking"][t].append(r.rtt_ms)
                probe_ms["blocking"][t].append(took * 1000)
                took, ra = loop.run_until_complete(one_async(specs[t]))
                if ra.outcome is not Outcome.OK or ra.rtt_ms is None:  # type: ignore[attr-defined]
                    bad += 1
                    continue
                rtt["asyncio"][t].append(ra.rtt_ms)  # type: ignore[attr-defined]
                probe_ms["asyncio"][t].append(took * 1000)
    finally:
        loop.close()
    out: dict[str, object] = {}
    for driver in ("blocking", "asyncio"):
        rows: dict[str, object] = {}
        for t in TRANSPORTS:
            rows[t] = {
                "rtt": summary(rtt[driver][t]),
                "probe": summary(probe_ms[driver][t]),
            }
        for ws, base in PAIRS:
            rows[f"{ws}_vs_{base}"] = {
                "rtt_ratio": statistics.median(rtt[driver][ws])
                / statistics.median(rtt[driver][base]),
                "probe_ratio": statistics.median(probe_ms[driver][ws])
                / statistics.median(probe_ms[driver][base]),
            }
        out[driver] = rows
    return out, bad


def bench_oneshot(kam: KamailioPeer, runs: int) -> tuple[dict[str, object], int]:
    sipwatch = shutil.which("sipwatch") or str(Path(sys.executable).parent / "sipwatch")
    cmds = {}
    for t in TRANSPORTS:
        cmd = [sipwatch, "probe", kam.uri(t, user="ping")]
        if t in ("tls", "wss"):
            cmd += ["--ca-file", str(kam.cert_file)]
        cmds[t] = cmd
    for _ in range(3):  # warm the page cache
        for cmd in cmds.values():
            wall(cmd)
    times: dict[str, list[float]] = {t: [] for t in TRANSPORTS}
    bad = 0
    for _ in range(runs):
        for t, cmd in cmds.items():
            took, rc = wall(cmd)
            times[t].append(took * 1000)
            bad += rc != 0
    out: dict[str, object] = {t: summary(times[t]) for t in TRANSPORTS}
    for ws, base in PAIRS:
        out[f"{ws}_vs_{base}"] = statistics.median(times[ws]) / statistics.median(times[base])
    return out, bad


def bench_concurrent(kam: KamailioPeer, rounds: int, n: int) -> dict[str, object]:
    ctx = ProbeContext()
    s = spec(kam, "wss")

    async def round_() -> tuple[float, dict[str, int]]:
        started = time.perf_counter()
        results = await asyncio.gather(*(run_probe(s, ctx) for _ in range(n)))
        counts: dict[str, int] = {}
        for r in results:
            counts[str(r.outcome)] = counts.get(str(r.outcome), 0) + 1
        return time.perf_counter() - started, counts

    walls, all_counts = [], []
    for _ in range(rounds):
        took, counts = asyncio.run(round_())
        walls.append(took * 1000)
        all_counts.append(counts)
    ok = sum(c.get("ok", 0) for c in all_counts)
    return {
        "probes_per_round": n,
        "rounds": rounds,
        "ok": ok,
        "lost": rounds * n - ok,
        "outcomes_per_round": all_counts,
        "round_wall_ms_median": statistics.median(walls),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtt-runs", type=int, default=200)
    ap.add_argument("--oneshot-runs", type=int, default=30)
    ap.add_argument("--concurrent", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict[str, object] = {
        "rtt_runs": args.rtt_runs,
        "oneshot_runs": args.oneshot_runs,
    }
    with tempfile.TemporaryDirectory(prefix="sipwatch-bench-ws-") as tmp:
        kam = start_kamailio(Path(tmp) / "kam")
        try:
            rtt, bad_rtt = bench_rtt(kam, args.rtt_runs)
            oneshot, bad_oneshot = bench_oneshot(kam, args.oneshot_runs)
            concurrent = bench_concurrent(kam, args.rounds, args.concurrent)
        finally:
            kam.stop()
    out.update(rtt=rtt, oneshot=oneshot, concurrent=concurrent)
    # Absolute one-shot times follow the machine's load (CPython start-up is most of them):
    # compare transports within one run, and note the load it ran under.
    out["load_avg_1_5_15"] = os.getloadavg()
    out["failed_probes"] = bad_rtt + bad_oneshot
    for driver in ("blocking", "asyncio"):
        rows = rtt[driver]
        assert isinstance(rows, dict)
        for t in TRANSPORTS:
            row = rows[t]
            print(
                f"{driver:8} {t:4} rtt median {row['rtt']['median_ms']:.3f} ms "
                f"(p95 {row['rtt']['p95_ms']:.3f})  whole probe median "
                f"{row['probe']['median_ms']:.2f} ms (p95 {row['probe']['p95_ms']:.2f})"
            )
        for ws, base in PAIRS:
            r = rows[f"{ws}_vs_{base}"]
            print(
                f"{driver:8} {ws}/{base}: rtt {r['rtt_ratio']:.2f}x, "
                f"whole probe {r['probe_ratio']:.2f}x"
            )
    for t in TRANSPORTS:
        row = oneshot[t]
        assert isinstance(row, dict)
        print(f"one-shot {t:4} median {row['median_ms']:.1f} ms (p95 {row['p95_ms']:.1f})")
    for ws, base in PAIRS:
        print(f"one-shot {ws}/{base}: {oneshot[f'{ws}_vs_{base}']:.2f}x")
    print(
        f"concurrent: {concurrent['rounds']} rounds of {concurrent['probes_per_round']} WSS "
        f"probes: {concurrent['ok']} ok, {concurrent['lost']} lost, round median "
        f"{concurrent['round_wall_ms_median']:.0f} ms"
    )
    print(f"failed probes outside the concurrency rounds: {out['failed_probes']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["failed_probes"] == 0 and concurrent["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
