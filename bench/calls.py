"""Call probe cost (issue 12): `sipwatch probe --method INVITE --media-s 1` against a sipp
UAC placing the same call, and 50 concurrent call probes in one process, same run.

1. one call: `sipwatch probe URI --method INVITE --media-s 1 --json` as a fresh process,
   against `sipp -sf bench/sipp_call_uac.xml -m 1` (INVITE with SDP, ACK, 1 s of RTP, BYE),
   alternating, --runs each (>= 10), both calling the same sipp IVR (answer.xml,
   -rtp_echo). Wall time and CPU time (user + system of the child, from wait4) per run:
   medians and the ratios of medians (sipwatch / sipp).
2. 50 concurrent call probes: one asyncio process, as the daemon runs them (each probe a
   task on one event loop, `run_probe`), each with 1 s of media, all against one sipp IVR
   (-rtp_echo, -l 60). All must be `ok`; per-call rtp_loss_pct and jitter; sipp's own
   counters (-trace_stat) must show 50 successful calls, 0 failed, 0 still open.

    python bench/calls.py [--runs 10] [--calls 50] [--out bench/results]

Writes calls-<date>.json and calls-<date>.md to --out. Loopback only; sipp stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)

from testbed.sipp import SippIvr, start_sipp_ivr

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "tests" / "data" / "sipp" / "answer.xml"
UAC = HERE / "sipp_call_uac.xml"


def run_child(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of the child: user + system, from wait4, exit status)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def wait_stats(ivr: SippIvr, done: int, timeout_s: float = 10.0) -> dict[str, str]:
    """sipp's counters once `done` calls are over (successful + failed), bounded."""
    deadline = time.monotonic() + timeout_s
    stats: dict[str, str] = {}
    while time.monotonic() < deadline:
        stats = ivr.stats()
        over = int(stats.get("SuccessfulCall(C)", 0)) + int(stats.get("FailedCall(C)", 0))
        if over >= done and stats.get("CurrentCall") == "0":
            return stats
        time.sleep(0.1)
    return stats


def counts(stats: dict[str, str]) -> dict[str, int]:
    keys = {"successful": "SuccessfulCall(C)", "failed": "FailedCall(C)", "open": "CurrentCall"}
    return {k: int(stats.get(v, -1)) for k, v in keys.items()}


def one_call(work: Path, runs: int) -> dict[str, Any]:
    sipwatch = shutil.which("sipwatch") or str(Path(sys.executable).parent / "sipwatch")
    (work / "silence-1s.ulaw").write_bytes(b"\xff" * 8000)  # 1 s of PCMU silence
    ivr = start_sipp_ivr(SCENARIO, work / "ivr1", calls=0, max_open=10, call_timeout_s=170)
    try:
        ours_cmd = [sipwatch, "probe", ivr.uri(), "--method", "INVITE", "--media-s", "1"]
        base_cmd = [
            "sipp", "-sf", str(UAC), "-s", "ivr", "-i", ivr.host, "-p", "0", "-mi", ivr.host,
            "-m", "1", "-nostdin", f"{ivr.host}:{ivr.port}",
        ]  # fmt: skip
        rows: dict[str, list[tuple[float, float, int]]] = {"sipwatch": [], "sipp": []}
        run_child(ours_cmd, work)  # warm the page cache for both
        run_child(base_cmd, work)
        for _ in range(runs):
            rows["sipwatch"].append(run_child(ours_cmd, work))
            rows["sipp"].append(run_child(base_cmd, work))
        stats = counts(wait_stats(ivr, 2 * runs + 2))
    finally:
        ivr.stop()
    out: dict[str, Any] = {"runs": runs, "ivr_calls": stats}
    for side, values in rows.items():
        out[side] = {
            "wall_median_ms": round(statistics.median(v[0] for v in values) * 1000, 1),
            "cpu_median_ms": round(statistics.median(v[1] for v in values) * 1000, 1),
            "wall_max_ms": round(max(v[0] for v in values) * 1000, 1),
            "nonzero_exits": sum(v[2] != 0 for v in values),
        }
    ours, base = out["sipwatch"], out["sipp"]
    out["wall_ratio"] = round(ours["wall_median_ms"] / base["wall_median_ms"], 3)
    out["cpu_ratio"] = round(ours["cpu_median_ms"] / max(base["cpu_median_ms"], 0.1), 3)
    return out


async def _concurrent(uri: str, n: int) -> list[Any]:
    from sipwatch.probes import run_probe
    from sipwatch.probes._sip import ProbeContext
    from sipwatch.probes.sip_call import SipCallSpec

    ctx = ProbeContext()
    specs = [SipCallSpec(uri=uri, media_s=1.0, timeout_s=5.0) for _ in range(n)]
    return await asyncio.gather(*(run_probe(s, ctx) for s in specs))


def concurrent(work: Path, n: int) -> dict[str, Any]:
    ivr = start_sipp_ivr(SCENARIO, work / "ivr50", calls=0, max_open=n + 10, call_timeout_s=170)
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = asyncio.run(_concurrent(ivr.uri(), n))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        stats = counts(wait_stats(ivr, n))
    finally:
        ivr.stop()
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r.outcome.value] = outcomes.get(r.outcome.value, 0) + 1
    loss = [r.extra.get("rtp_loss_pct") for r in results]
    jitter = [r.extra.get("jitter_ms") for r in results]
    known_loss = [x for x in loss if x is not None]
    known_jitter = [x for x in jitter if x is not None]
    return {
        "calls": n,
        "outcomes": outcomes,
        "all_ok": outcomes.get("ok", 0) == n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "ivr_calls": stats,
        "rtp_loss_pct": {
            "max": max(known_loss, default=None),
            "mean": round(statistics.mean(known_loss), 3) if known_loss else None,
            "per_call": loss,
        },
        "jitter_ms": {
            "max": max(known_jitter, default=None),
            "median": statistics.median(known_jitter) if known_jitter else None,
            "per_call": jitter,
        },
        "rtp_late_slots_total": sum(int(r.extra.get("rtp_late_slots") or 0) for r in results),
        "bye_200": sum(r.extra.get("bye_status") == 200 for r in results),
    }


def markdown(out: dict[str, Any]) -> str:
    a, b = out["one_call"], out["concurrent"]
    return (
        f"# Call probe cost, {out['date']}\n\n"
        f"`python bench/calls.py` (loopback, sipp IVR answer.xml with -rtp_echo; load "
        f"{out['loadavg']}).\n\n"
        "| measurement | sipwatch | baseline (same run) | ratio |\n|---|---|---|---|\n"
        f"| one call probe, 1 s media, fresh process, wall, median of {a['runs']} | "
        f"{a['sipwatch']['wall_median_ms']} ms | sipp UAC, same call, "
        f"{a['sipp']['wall_median_ms']} ms | {a['wall_ratio']}x |\n"
        f"| same, CPU (user + sys), median of {a['runs']} | "
        f"{a['sipwatch']['cpu_median_ms']} ms | {a['sipp']['cpu_median_ms']} ms | "
        f"{a['cpu_ratio']}x |\n"
        f"| {b['calls']} concurrent call probes, one process, 1 s media each | "
        f"wall {b['wall_s']} s, CPU {b['cpu_s']} s; outcomes {b['outcomes']}; "
        f"loss max {b['rtp_loss_pct']['max']} % (mean {b['rtp_loss_pct']['mean']} %); "
        f"jitter median {b['jitter_ms']['median']} ms, max {b['jitter_ms']['max']} ms; "
        f"late sender slots {b['rtp_late_slots_total']} | sipp IVR's counters: "
        f"{b['ivr_calls']} | - |\n\n"
        f"One-call IVR counters (both sides' calls): {a['ivr_calls']}; non-zero exits: "
        f"sipwatch {a['sipwatch']['nonzero_exits']}, sipp {a['sipp']['nonzero_exits']}.\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if args.runs < 10:
        raise SystemExit("--runs must be >= 10")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    out: dict[str, Any] = {"date": date, "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="sipwatch-bench-calls-") as tmp:
        out["one_call"] = one_call(Path(tmp), args.runs)
        a = out["one_call"]
        print(
            f"one call, median of {args.runs}: sipwatch wall {a['sipwatch']['wall_median_ms']} "
            f"ms CPU {a['sipwatch']['cpu_median_ms']} ms; sipp UAC wall "
            f"{a['sipp']['wall_median_ms']} ms CPU {a['sipp']['cpu_median_ms']} ms; ratios "
            f"wall {a['wall_ratio']}x CPU {a['cpu_ratio']}x; IVR {a['ivr_calls']}"
        )
        out["concurrent"] = concurrent(Path(tmp), args.calls)
        b = out["concurrent"]
        print(
            f"{b['calls']} concurrent: {b['outcomes']}, wall {b['wall_s']} s CPU {b['cpu_s']} "
            f"s, loss max {b['rtp_loss_pct']['max']} %, jitter max {b['jitter_ms']['max']} "
            f"ms; IVR {b['ivr_calls']}"
        )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["usage_self_maxrss_mb"] = round(maxrss / 1024, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"calls-{date}.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / f"calls-{date}.md").write_text(markdown(out))
    ok = (
        b["all_ok"] and b["ivr_calls"]["failed"] == 0 and b["ivr_calls"]["open"] == 0
        and a["sipwatch"]["nonzero_exits"] == 0 and a["sipp"]["nonzero_exits"] == 0
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
