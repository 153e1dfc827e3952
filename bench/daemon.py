"""Daemon benchmarks, each against its named baseline in the same run:

1. footprint: `sipwatch run` with 10 targets at 1 s intervals for --seconds (default 60):
   RSS (max and last) and CPU share of one core, from /proc. Goals: <= 50 MB, <= 1 %.
   Also the soak check: RSS growth over the second half of the run (must be ~0) and the
   daemon's task count is not observable from outside, so RSS + fds are the proxies.
2. `sipwatch check` wall time with the daemon running (it answers from the daemon) against
   `sipsak -s` (median of --runs). Goal: <= 2x.
3. the OCF shim's monitor (mode=service, OCF_CHECK_LEVEL=10) with the daemon's verdict file
   (no Python started) against `sipsak -s` (median of --runs; goal <= 0.5x), and the same
   monitor on its slow path (`sipwatch check`, no verdict file) for reference.
4. detection latency: fault switched on (drop, SIGSTOP of the process group, closed port) to
   the verdict change seen on /readyz, with the policy's confirm runs off (the baseline:
   every run on the interval, floor fall x interval + timeout) and on (confirm_interval_s
   0.1: floor interval + fall x timeout), each in its own daemon, same run.

    python bench/daemon.py [--seconds 60] [--runs 30] [--parts footprint,check,detection]
                           [--json bench/results/daemon.json]

`--parts` runs only some of them (e.g. `--parts check` for the start-up work alone).

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

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)

from testbed import free_port, start_kamailio

SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
TICK = os.sysconf("SC_CLK_TCK")
INTERVAL, TIMEOUT, FALL = 1.0, 0.5, 2

POLICY = f"""
startup_grace_s = 0.0
[defaults]
confirm_interval_s = CONFIRM
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


def config(kam: object, port: int, n: int, verdict: Path | None = None) -> str:
    vf = f'verdict_file = "{verdict}"\n' if verdict else ""
    lines = [f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\n{vf}']
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


class Daemon:
    """`sipwatch run` with 10 targets on Kamailio `kam`, its verdict file in `work`."""

    def __init__(self, work: Path, kam: object, confirm_s: float) -> None:
        work.mkdir(parents=True, exist_ok=True)
        (work / "policy.toml").write_text(POLICY.replace("CONFIRM", str(confirm_s)))
        self.port = free_port("tcp")
        self.verdict = work / "run" / "verdict"
        self.cfg = work / "sipwatch.toml"
        self.cfg.write_text(config(kam, self.port, 10, self.verdict))
        self.log = (work / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [SIPWATCH, "run", "--config", str(self.cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if wait_for(lambda: get(self.port, "/readyz")[0] == 200, 15) is None:
            self.stop()
            raise SystemExit("daemon never became ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time of one run (blocking wait, watchdog), with an environment."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    return time.perf_counter() - started, rc


def footprint(d: Daemon, seconds: float) -> dict[str, object]:
    cpu0, _, _ = proc_stat(d.proc.pid)
    t0 = time.monotonic()
    samples = []
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        samples.append((time.monotonic() - t0, *proc_stat(d.proc.pid)))
    cpu1 = samples[-1][1]
    elapsed = samples[-1][0]
    half = [s for s in samples if s[0] >= elapsed / 2]
    rss = [s[2] for s in samples]
    status = json.loads(get(d.port, "/status")[1])
    runs = sum(p["runs"] for p in status["probes"].values())
    f: dict[str, object] = {
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
    print(
        f"footprint: CPU {100 * (cpu1 - cpu0) / elapsed:.2f} % of one core, "
        f"RSS max {max(rss) / 2**20:.1f} MB (growth in 2nd half "
        f"{f['rss_growth_second_half_mb']:+.2f} MB), fds {f['fds_first_last']}, "
        f"{runs} probe runs in {elapsed:.0f} s"
    )
    return f


def check_and_shim(d: Daemon, kam: object, work: Path, runs: int) -> dict[str, object]:
    """`sipwatch check` and the shim's monitor (fast and slow path) against sipsak, pairwise
    interleaved so a busy moment hits every side alike."""
    root = work / "ocf-root"
    subprocess.run([SIPWATCH, "ocf", "install", "--root", str(root)], check=True)
    agent = str(root / "usr/lib/ocf/resource.d/sipwatch/sipwatch")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": "sw",
        "OCF_RESKEY_CRM_meta_interval": "1000",
        "OCF_RESKEY_CRM_meta_timeout": "20000",
        "HA_LOGFACILITY": "none",
        "OCF_RESKEY_mode": "service",
        "OCF_RESKEY_config": str(d.cfg),
        "OCF_RESKEY_state": str(work / "shim.state"),
        "OCF_RESKEY_verdict_file": str(d.verdict),
        "OCF_CHECK_LEVEL": "10",
    }
    slow_env = {**env, "OCF_RESKEY_verdict_file": ""}
    if timed([agent, "start"], env)[1] != 0:
        raise SystemExit("the shim did not start")
    sides = {
        "check": ([SIPWATCH, "check", "--config", str(d.cfg)], dict(os.environ)),
        "shim_fast": ([agent, "monitor"], env),
        "shim_slow": ([agent, "monitor"], slow_env),
        "sipsak": (["sipsak", "-s", kam.uri("udp", user="ping")], dict(os.environ)),  # type: ignore[attr-defined]
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    for i in range(runs + 3):
        for name, (cmd, e) in sides.items():
            t, rc = timed(cmd, e)
            if rc != 0:
                raise SystemExit(f"{name} exited {rc}: not a healthy run")
            if i >= 3:  # warm-up
                times[name].append(t)
    timed([agent, "stop"], env)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    row: dict[str, object] = {f"{k}_median_ms": round(v, 2) for k, v in med.items()}
    for k in ("check", "shim_fast", "shim_slow"):
        row[f"{k}_ratio"] = round(med[k] / med["sipsak"], 3)
    print(
        f"medians of {runs}: sipsak -s {med['sipsak']:.1f} ms; check (daemon answering) "
        f"{med['check']:.1f} ms ({row['check_ratio']}x); shim monitor, verdict file "
        f"{med['shim_fast']:.1f} ms ({row['shim_fast_ratio']}x); shim monitor via check "
        f"{med['shim_slow']:.1f} ms ({row['shim_slow_ratio']}x)"
    )
    return row


def detection(d: Daemon, kam: object) -> dict[str, object]:
    lat: dict[str, object] = {}

    def red() -> bool:
        return get(d.port, "/readyz")[1].startswith("red")

    def green() -> bool:
        return get(d.port, "/readyz")[1].startswith("green")

    for fault in ("drop", "500"):
        wait_for(green, 20)
        time.sleep(0.5)
        if fault == "drop":
            kam.set_fault("OPTIONS", drop=True)  # type: ignore[attr-defined]
        else:
            kam.set_fault("OPTIONS", code=500)  # type: ignore[attr-defined]
        lat[f"{fault}_s"] = wait_for(red, 20)
        kam.clear_faults()  # type: ignore[attr-defined]
    wait_for(green, 20)
    os.killpg(kam.pid, signal.SIGSTOP)  # type: ignore[attr-defined]
    lat["sigstop_s"] = wait_for(red, 20)
    os.killpg(kam.pid, signal.SIGCONT)  # type: ignore[attr-defined]
    wait_for(green, 20)
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--parts", default="footprint,check,detection")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="sipwatch-bench-daemon-") as tmp:
        work = Path(tmp)
        kam = start_kamailio(work / "kam", tls=False)
        try:
            d = Daemon(work / "confirm", kam, 0.1)
            try:
                if "footprint" in parts:
                    out["footprint"] = footprint(d, args.seconds)
                if "check" in parts:
                    out["check_and_shim_vs_sipsak"] = check_and_shim(d, kam, work, args.runs)
                with_confirm = detection(d, kam) if "detection" in parts else {}
            finally:
                d.stop()
            if "detection" not in parts:
                return _write(args.json, out)
            base = Daemon(work / "no-confirm", kam, 0.0)
            try:
                without = detection(base, kam)
            finally:
                base.stop()
            out["detection"] = {
                "fall": FALL,
                "interval_s": INTERVAL,
                "timeout_s": TIMEOUT,
                "confirm_off": without,
                "confirm_on": with_confirm,
            }
            for name, lat in (("confirm off (baseline)", without), ("confirm on", with_confirm)):
                print(
                    f"detection, fault -> /readyz red, {name}: "
                    + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in lat.items() if v is not None)
                )
        finally:
            kam.stop()
    return _write(args.json, out)


def _write(path: Path | None, out: dict[str, object]) -> int:
    if path:
        path.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
