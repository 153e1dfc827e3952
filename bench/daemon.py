"""Daemon benchmarks, each against its named baseline in the same run:

1. footprint: `sipwatch run` with 10 targets at 1 s intervals for --seconds (default 60):
   RSS (max and last) and CPU share of one core, from /proc. Goals: <= 50 MB, <= 1 %.
   Also the soak check: RSS growth over the second half of the run (must be ~0) and the
   daemon's task count is not observable from outside, so RSS + fds are the proxies.
2. `sipwatch check` wall time with the daemon running (it answers from the daemon) against
   `sipsak -s` (median of --runs). Goal: <= 2x.
3. detection latency: fault switched on (drop, SIGSTOP of the process group, closed port) to
   the verdict change seen on /readyz, against the floor interval + timeout (here the policy
   needs `fall` failures, so the floor is fall x interval + timeout).

    python bench/daemon.py [--seconds 60] [--runs 30] [--json bench/results/daemon.json]

Loopback only; Kamailio and the daemon are stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from oneshot import wall  # bench/ is the script's directory: same watchdog-timed runner

from sipwatch.testbed import free_port, start_kamailio

SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
TICK = os.sysconf("SC_CLK_TCK")
INTERVAL, TIMEOUT, FALL = 1.0, 0.5, 2

POLICY = f"""
startup_grace_s = 0.0
[defaults]
fall = {FALL}
rise = 2
window_failures = 10
window_s = 60.0
[kinds.sip_options]
role = "critical"
[kinds.pbx_process]
role = "critical"
fall = 1
"""


def config(kam: object, port: int, n: int) -> str:
    lines = [f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\n']
    transports = ("udp", "tcp")
    for i in range(n):
        t = transports[i % 2]
        lines.append(
            f'[[probes]]\nname = "pbx-{t}-{i}"\nkind = "sip_options"\n'
            f'uri = "{kam.uri(t, user=f"u{i}")}"\n'  # type: ignore[attr-defined]
            f"interval_s = {INTERVAL}\ntimeout_s = {TIMEOUT}\n"
        )
    return "".join(lines)


def proc_stat(pid: int) -> tuple[float, int, int]:
    """(cpu seconds, rss bytes, open fds) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return cpu, rss, fds


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_for(pred, timeout_s: float) -> float | None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if pred():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="sipwatch-bench-daemon-") as tmp:
        work = Path(tmp)
        kam = start_kamailio(work / "kam", tls=False)
        (work / "policy.toml").write_text(POLICY)
        port = free_port("tcp")
        cfg = work / "sipwatch.toml"
        cfg.write_text(config(kam, port, 10))
        log = (work / "daemon.log").open("wb")
        proc = subprocess.Popen(
            [SIPWATCH, "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            if wait_for(lambda: get(port, "/readyz")[0] == 200, 15) is None:
                raise SystemExit("daemon never became ready")
            # 1. footprint
            cpu0, _, _ = proc_stat(proc.pid)
            t0 = time.monotonic()
            samples = []
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1.0)
                samples.append((time.monotonic() - t0, *proc_stat(proc.pid)))
            cpu1 = samples[-1][1]
            elapsed = samples[-1][0]
            half = [s for s in samples if s[0] >= elapsed / 2]
            rss = [s[2] for s in samples]
            status = json.loads(get(port, "/status")[1])
            runs = sum(p["runs"] for p in status["probes"].values())
            out["footprint"] = {
                "targets": 10,
                "interval_s": INTERVAL,
                "seconds": round(elapsed, 1),
                "cpu_share_of_one_core": (cpu1 - cpu0) / elapsed,
                "rss_max_mb": max(rss) / 2**20,
                "rss_last_mb": rss[-1] / 2**20,
                "rss_growth_second_half_mb": (half[-1][2] - half[0][2]) / 2**20,
                "fds_first_last": [samples[0][3], samples[-1][3]],
                "probe_runs": runs,
                "verdict": status["verdict"],
            }
            f = out["footprint"]
            print(
                f"footprint: CPU {100 * f['cpu_share_of_one_core']:.2f} % of one core, "
                f"RSS max {f['rss_max_mb']:.1f} MB (growth in 2nd half "
                f"{f['rss_growth_second_half_mb']:+.2f} MB), fds {f['fds_first_last']}, "
                f"{runs} probe runs in {elapsed:.0f} s"
            )

            # 2. check wall time vs sipsak
            check = [SIPWATCH, "check", "--config", str(cfg)]
            sipsak = ["sipsak", "-s", kam.uri("udp", user="ping")]
            for _ in range(3):
                wall(check)
                wall(sipsak)
            ours, base = [], []
            for _ in range(args.runs):
                ours.append(wall(check)[0])
                base.append(wall(sipsak)[0])
            row = {
                "check_median_ms": statistics.median(ours) * 1000,
                "sipsak_median_ms": statistics.median(base) * 1000,
            }
            row["ratio"] = row["check_median_ms"] / row["sipsak_median_ms"]
            out["check_vs_sipsak"] = row
            print(
                f"check (daemon answering): median {row['check_median_ms']:.1f} ms; "
                f"sipsak -s {row['sipsak_median_ms']:.1f} ms; ratio {row['ratio']:.2f}x"
            )

            # 3. detection latency
            floor = FALL * INTERVAL + TIMEOUT
            lat: dict[str, object] = {"floor_s": floor}

            def red() -> bool:
                return get(port, "/readyz")[1].startswith("red")

            def green() -> bool:
                return get(port, "/readyz")[1].startswith("green")

            kam.set_fault("OPTIONS", drop=True)
            lat["drop_s"] = wait_for(red, 20)
            kam.clear_faults()
            wait_for(green, 20)
            os.killpg(kam.pid, signal.SIGSTOP)
            lat["sigstop_s"] = wait_for(red, 20)
            os.killpg(kam.pid, signal.SIGCONT)
            wait_for(green, 20)
            kam.stop()
            lat["closed_port_s"] = wait_for(red, 20)
            out["detection"] = lat
            print(
                f"detection (fault -> /readyz red; floor fall x interval + timeout = "
                f"{floor:.1f} s): drop {lat['drop_s']:.2f} s, SIGSTOP "
                f"{lat['sigstop_s']:.2f} s, closed port {lat['closed_port_s']:.2f} s"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            kam.stop()
            log.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
