"""The daemon soak: `sipwatch run` for a long time against a real Kamailio, faults switched on
and off on a fixed schedule, SIGHUP reloads, HTTP and agent-check clients polling throughout.

    python bench/soak.py [--minutes 60] [--phase-s 20] [--settle-s 10] [--reload-s S]
                         [--out bench/results] [--work DIR]        (or: make soak SOAK_MINUTES=60)

What runs (all on the loopback, every process started here stopped by its PID):
- Kamailio (testbed.start_kamailio, UDP+TCP, one digest user) and `sipwatch run` with 10 probes
  at 1 s: 4 OPTIONS over UDP, 4 over TCP, a REGISTER with digest auth, and `pbx_process` on
  Kamailio's pidfile; the agent-check port and the verdict file on. The policy is POLICY
  below: the shipped `fast` one with the VIP logic off (no VIP here) and short holds.
- The schedule (build_schedule, deterministic): a clean lead-in, then each fault of
  FAULT_ORDER for --phase-s, a clean phase of --phase-s after each, round and round until
  --minutes. Faults: Kamailio's fault switches (testbed/kamailio.cfg: drop, 503, 503 with
  Retry-After, a 2 s delay, a 0.3 s delay, garbage instead of a reply) and the whole
  Kamailio process group stopped with SIGSTOP (SIGCONT at the phase's end).
- SIGHUP every --reload-s (default min(150 s, a quarter of the run)), each with a changed
  config (a comment and the REGISTER's expires_s): a reload counts as taken when /status
  shows the new config's sha256.
- Clients: GET /status every second (the verdict samples), GET /readyz every second, an
  agent-check client (HAProxy's: connect, read the line, close) every second, GET /metrics
  every 2 s.
- Every 10 s: the daemon's RSS, open fds (/proc/PID/fd), threads (/proc/PID/status), CPU
  (utime+stime) and asyncio tasks (the `sipwatch_asyncio_tasks` gauge on /metrics).

The report (bench/results/soak-<UTC date-time>.json and .md):
- per resource, the least-squares slope per hour over the samples after the warm-up (the
  first 5 min, or 20 % of a shorter run), with first/last/min/max; the mean CPU share;
- verdict accuracy: each phase's expected verdict (green, yellow or red) against every
  sample of /status, /readyz and the agent-check line taken from --settle-s after the
  phase began to its end; each mismatch listed with its time;
- the daemon log scanned for `Traceback`, ERROR lines and `event=` names that say error,
  failed, crashed, rejected or timeout: all must be 0;
- PASS only when every judged phase matched on every channel, the log is clean, no client
  request failed, every reload was taken, the daemon exited 0 on SIGTERM, and (on a run whose
  measured window is at least 30 min) every slope is within LIMITS_PER_H.
Exit status 0 on PASS, 1 otherwise; the results are written either way, also when the run
is interrupted (Ctrl-C, SIGTERM: everything is stopped, what was seen so far is judged).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _repo_root  # noqa: F401  (first: the repo root on sys.path, for testbed)

from testbed import KamailioPeer, free_port, start_kamailio

SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
RESULTS = Path(__file__).resolve().parent / "results"
TICK = os.sysconf("SC_CLK_TCK")
INTERVAL_S, TIMEOUT_S = 1.0, 0.8
SAMPLE_S = 10.0  # resource samples
POLL_S = {"status": 1.0, "readyz": 1.0, "agent": 1.0, "metrics": 2.0}
REQUEST_TIMEOUT_S = 3.0
#: A judged window at least this long must hold a sample of every channel (polled each second).
NO_SAMPLE_WINDOW_S = 3.0
MIN_JUDGED_WINDOW_S = 1800.0  # slopes are judged only over at least this much run
#: Flat after warm-up: the largest slope (per hour) that passes. Each is well below what a
#: leak of one object per event would give (24 reloads and ~45 fault phases an hour, 36,000
#: probe runs) and above the noise of a 1 h fit: the task and fd counts include what is in
#: flight at the sample (probe runs, TCP connections, the scrape itself), +-5 tasks, +-3 fds.
#: 1 MB/h of RSS is still 0.7 GB a month: a run that passes bounds a leak at that, no finer.
LIMITS_PER_H = {"rss_mb": 1.0, "fds": 2.0, "tasks": 5.0, "threads": 1.0}
USER, PASSWORD = "soak", "soak-secret-1"

# The shipped `fast` policy (policies/fast.toml) with what this rig has not got turned off:
# no VIP (active_when empty: the node is active), no startup grace once the lead-in is clean;
# the holds are short so that a phase settles well within --settle-s.
POLICY = """\
description = "soak: fast, no VIP, short holds"
startup_grace_s = 0.0
active_when = []
hung_hold_s = 3.0
draining_max_hold_s = 60.0
rtt_ewma_alpha = 0.5
score_yellow_below = 90
score_red_below = 50
[defaults]
role = "major"
fall = 2
rise = 2
window_failures = 3
window_s = 20.0
confirm_interval_s = 0.1
[kinds.sip_options]
role = "critical"
weight = 3.0
rtt_yellow_ms = 150.0
[kinds.sip_register]
role = "major"
weight = 2.0
rtt_yellow_ms = 500.0
[kinds.pbx_process]
role = "critical"
weight = 3.0
fall = 1
rise = 2
"""

#: Garbage sent back instead of a reply, one per round of the schedule: plain text, a
#: status line with nothing of the request in it, a truncated response.
GARBAGE = (
    "this is not SIP at all\r\n\r\n",
    "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnot-yours\r\nCSeq: x\r\n",
)


@dataclass(frozen=True)
class Fault:
    """One kind of injected fault: what the daemon's verdict (on /status; /readyz: 200 only
    when green) and its agent-check line (sipwatch/agent_check.py) must become while it is on."""

    name: str
    expect: str  # green | yellow | red
    agent: str  # the agent-check line, or "down" for any `down ...` line
    what: str  # for the report


FAULTS = {
    f.name: f
    for f in (
        Fault("clean", "green", "up ready 100%", "no fault"),
        Fault("drop", "red", "down", "OPTIONS and REGISTER dropped (no reply)"),
        Fault("stopped", "red", "down", "Kamailio's process group stopped (SIGSTOP)"),
        Fault("garbage", "red", "down", "OPTIONS answered with garbage bytes"),
        # A draining node is yellow, and HAProxy is told to drain it, not to lower its weight.
        Fault("draining", "yellow", "up drain", "OPTIONS answered 503 with Retry-After: 3"),
        Fault("status_503", "red", "down", "OPTIONS and REGISTER answered 503 (no Retry-After)"),
        Fault("slow", "yellow", "up ready 50%", "OPTIONS answered 0.3 s late (rtt_yellow_ms 150)"),
        Fault("delay", "red", "down", "OPTIONS and REGISTER answered 2 s late (timeout 0.8 s)"),
    )
}
FAULT_ORDER = ("drop", "stopped", "garbage", "draining", "status_503", "slow", "delay")


@dataclass
class Phase:
    index: int
    fault: str
    start_s: float  # planned, relative to the schedule's start
    end_s: float
    round: int = 0  # how many times this fault came before (picks the garbage variant)
    applied_s: float | None = None  # when the switch had taken effect (measured)
    ended_s: float | None = None  # when the next phase began to be switched (measured)

    @property
    def expect(self) -> str:
        return FAULTS[self.fault].expect


def build_schedule(
    total_s: float, phase_s: float, lead_s: float, faults: Sequence[str] = FAULT_ORDER
) -> list[Phase]:
    """A clean lead-in of `lead_s`, then fault, clean, fault, clean ... of `phase_s` each,
    the faults taken from `faults` in turn, the last phase cut at `total_s`."""
    for name in faults:
        if name not in FAULTS or name == "clean":
            raise ValueError(f"unknown fault {name!r}: choose from {', '.join(FAULT_ORDER)}")
    phases = [Phase(0, "clean", 0.0, min(lead_s, total_s))]
    rounds: dict[str, int] = {}
    t, i = phases[0].end_s, 0
    while t < total_s:
        name = "clean" if len(phases) % 2 == 0 else faults[i % len(faults)]
        if name != "clean":
            i += 1
        end = min(t + phase_s, total_s)
        phases.append(Phase(len(phases), name, t, end, rounds.get(name, 0)))
        rounds[name] = rounds.get(name, 0) + 1
        t = end
    return phases


def reload_times(total_s: float, every_s: float, offset_s: float = 7.0) -> list[float]:
    """When SIGHUP is sent: every `every_s` from `offset_s` after a full period, so that the
    reloads fall at varying points of the phases (the period is not a multiple of theirs)."""
    out, t = [], every_s + offset_s
    while t < total_s - 5:
        out.append(t)
        t += every_s
    return out


# -- the rig ----------------------------------------------------------------------------------
def apply_fault(kam: KamailioPeer, phase: Phase) -> None:
    """Switch the phase's fault on (the previous one was cleared by clear_fault)."""
    f = phase.fault
    if f == "drop":
        kam.set_fault("OPTIONS", drop=True)
        kam.set_fault("REGISTER", drop=True)
    elif f == "stopped":
        os.killpg(kam.pid, signal.SIGSTOP)  # the group we started: pgid == kam.pid
    elif f == "garbage":
        kam.set_fault("OPTIONS", garbage=GARBAGE[phase.round % len(GARBAGE)])
    elif f == "draining":
        kam.set_fault("OPTIONS", code=503, reason="Draining", retry_after_s=3)
    elif f == "status_503":
        kam.set_fault("OPTIONS", code=503, reason="Soak Fault")
        kam.set_fault("REGISTER", code=503, reason="Soak Fault")
    elif f == "slow":
        kam.set_fault("OPTIONS", delay_ms=300)
    elif f == "delay":
        kam.set_fault("OPTIONS", delay_ms=2000)
        kam.set_fault("REGISTER", delay_ms=2000)


def clear_fault(kam: KamailioPeer, phase: Phase) -> None:
    if phase.fault == "stopped":
        os.killpg(kam.pid, signal.SIGCONT)
    elif phase.fault != "clean":
        kam.clear_faults()


def daemon_config(
    kam: KamailioPeer, work: Path, http_port: int, agent_port: int, generation: int
) -> str:
    """The daemon's config; `generation` (the reload count) changes a comment and the
    REGISTER's expires_s, so that every reload loads a config that really differs."""
    pwfile = work / "register.pass"
    lines = [
        f"# soak config, generation {generation}\n",
        'policy = "policy.toml"\nlog_level = "info"\n',
        f"[daemon]\nhttp_port = {http_port}\nagent_check_port = {agent_port}\n",
        f'verdict_file = "{work / "run" / "verdict"}"\n',
    ]
    timing = f"interval_s = {INTERVAL_S}\ntimeout_s = {TIMEOUT_S}\n"
    for transport in ("udp", "tcp"):
        for i in range(4):
            name = f"options-{transport}-{i}"
            uri = kam.uri(transport, user=f"ping{i}")
            lines.append(f'[[probes]]\nname = "{name}"\nkind = "sip_options"\nuri = "{uri}"\n')
            lines.append(timing)
    lines.append(
        f'[[probes]]\nname = "register"\nkind = "sip_register"\nuri = "{kam.uri("udp", USER)}"\n'
        f'password_file = "{pwfile}"\nexpires_s = {60 + 60 * (generation % 2)}\n' + timing
    )
    lines.append(
        f'[[probes]]\nname = "pbx"\nkind = "pbx_process"\n'
        f'pidfile = "{kam.rundir / "kamailio.pid"}"\n' + timing
    )
    return "".join(lines)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """(status, body); status 0 when the request itself failed (refused, timed out)."""
    try:
        url = f"http://127.0.0.1:{port}{path}"
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return 0, b""


def agent_check(port: int) -> str | None:
    """What HAProxy's agent-check does: connect, read the one line, close. None: failed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S) as s:
            data = b""
            while b"\n" not in data and len(data) < 512:
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    return line or None


def proc_sample(pid: int) -> dict[str, float]:
    """RSS (MB), open fds, threads and CPU seconds (utime+stime) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
    return {
        "rss_mb": rss_kb / 1024,
        "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
        "threads": float(threads),
        "cpu_s": cpu,
    }


def tasks_gauge(metrics: bytes) -> float | None:
    m = re.search(rb"^sipwatch_asyncio_tasks ([0-9.e+]+)$", metrics, re.M)
    return float(m.group(1)) if m else None


@dataclass
class Record:
    """Everything the clients and the sampler saw, times relative to the schedule's start."""

    t0: float = 0.0  # monotonic time of the schedule's start
    t0_wall: float = 0.0
    status: list[dict[str, Any]] = field(default_factory=list)  # t, t_end, verdict, sha
    readyz: list[dict[str, Any]] = field(default_factory=list)  # t, t_end, code
    agent: list[dict[str, Any]] = field(default_factory=list)  # t, t_end, line
    metrics: list[dict[str, Any]] = field(default_factory=list)  # t, t_end, code
    resources: list[dict[str, float]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # failed client requests
    reloads: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0


class Poller(threading.Thread):
    """Calls `poll` every `every_s` until `stop` is set (each call bounded by its timeouts)."""

    def __init__(self, name: str, every_s: float, poll: Callable[[], None], stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.every_s, self.poll, self.stop_event = every_s, poll, stop
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except Exception as exc:  # a bug here must fail the run, not stop a channel quietly
                self.failures.append(f"{self.name}: {exc!r}")
            self.stop_event.wait(max(0.0, self.every_s - (time.monotonic() - started)))


class Soak:
    """Kamailio, the daemon, the clients and the sampler of one soak run."""

    def __init__(self, work: Path, sample_s: float = SAMPLE_S) -> None:
        self.work = work
        self.sample_s = sample_s
        self.rec = Record()
        self.stop = threading.Event()
        self.kam: KamailioPeer | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.exit_code: int | None = None
        self.pollers: list[Poller] = []

    # -- start and stop -----------------------------------------------------------------------
    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.kam = start_kamailio(self.work / "kam", users={USER: PASSWORD}, tls=False, ws=False)
        pw = self.work / "register.pass"
        pw.write_text(PASSWORD + "\n")
        pw.chmod(0o600)
        (self.work / "policy.toml").write_text(POLICY)
        self.http_port = free_port("tcp")
        self.agent_port = free_port("tcp")
        self.cfg = self.work / "sipwatch.toml"
        self.cfg.write_text(self._config())
        self.log_path = self.work / "daemon.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [SIPWATCH, "run", "--config", str(self.cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while http_get(self.http_port, "/readyz")[0] != 200:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(
                    "the daemon never became ready (green):\n" + self.log_path.read_text()[-3000:]
                )
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the clients, resume Kamailio if frozen, stop the daemon (SIGTERM, bounded;
        its exit code is recorded), stop Kamailio. Every step is bounded; idempotent."""
        self.stop.set()
        for poller in self.pollers:
            poller.join(REQUEST_TIMEOUT_S * 2)
        if self.kam is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.kam.pid, signal.SIGCONT)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.exit_code = None  # did not exit on SIGTERM: reported as a failure
        elif self.proc is not None:
            self.exit_code = self.proc.returncode
        if self.kam is not None:
            self.kam.stop()
            self.kam = None

    def _config(self) -> str:
        assert self.kam is not None
        return daemon_config(self.kam, self.work, self.http_port, self.agent_port, self.generation)

    # -- the clients and the sampler ----------------------------------------------------------
    def _poll_status(self) -> None:
        t = self.rec.now()
        code, body = http_get(self.http_port, "/status")
        t_end = self.rec.now()
        try:
            data = json.loads(body) if code == 200 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.rec.errors.append({"t": t, "client": "status", "code": code})
            return
        self.rec.status.append(
            {
                "t": t,
                "t_end": t_end,
                "verdict": data.get("verdict"),
                "score": data.get("score"),
                "sha": data.get("config_sha256"),
                "runs": sum(p.get("runs", 0) for p in data.get("probes", {}).values()),
            }
        )

    def _poll_readyz(self) -> None:
        t = self.rec.now()
        code, _ = http_get(self.http_port, "/readyz")
        if code not in (200, 503):
            self.rec.errors.append({"t": t, "client": "readyz", "code": code})
            return
        self.rec.readyz.append({"t": t, "t_end": self.rec.now(), "code": code})

    def _poll_agent(self) -> None:
        t = self.rec.now()
        line = agent_check(self.agent_port)
        if line is None:
            self.rec.errors.append({"t": t, "client": "agent", "code": 0})
            return
        self.rec.agent.append({"t": t, "t_end": self.rec.now(), "line": line})

    def _poll_metrics(self) -> None:
        t = self.rec.now()
        code, body = http_get(self.http_port, "/metrics")
        if code != 200 or tasks_gauge(body) is None:
            self.rec.errors.append({"t": t, "client": "metrics", "code": code})
            return
        self.rec.metrics.append({"t": t, "t_end": self.rec.now(), "code": code})

    def _sample(self) -> None:
        assert self.proc is not None
        t = self.rec.now()
        try:
            s = proc_sample(self.proc.pid)
        except (OSError, AttributeError):
            return  # the daemon is gone: the main loop notices and ends the run
        code, body = http_get(self.http_port, "/metrics")
        tasks = tasks_gauge(body) if code == 200 else None
        s["t"] = t
        s["tasks"] = float("nan") if tasks is None else tasks
        self.rec.resources.append(s)

    def start_clients(self) -> None:
        self.rec.t0, self.rec.t0_wall = time.monotonic(), time.time()
        polls: dict[str, Callable[[], None]] = {
            "status": self._poll_status,
            "readyz": self._poll_readyz,
            "agent": self._poll_agent,
            "metrics": self._poll_metrics,
        }
        for name, poll in polls.items():
            self.pollers.append(Poller(f"soak-{name}", POLL_S[name], poll, self.stop))
        self.pollers.append(Poller("soak-sampler", self.sample_s, self._sample, self.stop))
        for poller in self.pollers:
            poller.start()

    # -- the schedule -------------------------------------------------------------------------
    def reload(self, t: float) -> None:
        """A changed config and SIGHUP; whether it was taken is judged from /status."""
        assert self.proc is not None
        self.generation += 1
        text = self._config()
        self.cfg.write_text(text)
        sha = hashlib.sha256(text.encode()).hexdigest()
        self.proc.send_signal(signal.SIGHUP)
        self.rec.reloads.append({"t": t, "generation": self.generation, "sha": sha})

    def run_schedule(self, phases: list[Phase], reloads: Sequence[float]) -> str | None:
        """Switch the faults and send the reloads on time; None, or why the run ended early."""
        assert self.kam is not None and self.proc is not None
        pending = sorted(reloads)
        previous: Phase | None = None
        for phase in phases:
            self._wait_until(phase.start_s, pending)
            if self.proc.poll() is not None:
                return f"the daemon exited ({self.proc.returncode}) at {self.rec.now():.0f} s"
            if previous is not None:
                previous.ended_s = self.rec.now()
                clear_fault(self.kam, previous)
            apply_fault(self.kam, phase)
            phase.applied_s = self.rec.now()
            previous = phase
            print(
                f"[{phase.applied_s:7.1f} s] phase {phase.index}: {phase.fault} "
                f"(expect {phase.expect})",
                flush=True,
            )
        end = phases[-1].end_s
        self._wait_until(end, pending)
        if previous is not None:
            previous.ended_s = self.rec.now()
            clear_fault(self.kam, previous)
        if self.proc.poll() is not None:
            return f"the daemon exited ({self.proc.returncode}) at {self.rec.now():.0f} s"
        return None

    def _wait_until(self, t: float, pending: list[float]) -> None:
        while (now := self.rec.now()) < t:
            if pending and pending[0] <= now:
                self.reload(pending.pop(0))
                continue
            if self.proc is not None and self.proc.poll() is not None:
                return
            nxt = min(t, pending[0]) if pending else t
            time.sleep(min(0.5, max(0.0, nxt - now)))


# -- judging (pure) ---------------------------------------------------------------------------
def agent_state(line: str) -> str:
    """An agent-check line as Fault.agent names it: `down` for any `down ...` line."""
    return "down" if line.startswith("down") else line


def judge(phases: Sequence[Phase], rec: Record, settle_s: float) -> dict[str, Any]:
    """Each phase's samples, per channel, from `settle_s` after its fault took effect until
    the next phase began to be switched: each must show the phase's expected verdict."""
    channels: dict[str, Callable[[dict[str, Any]], str]] = {
        "status": lambda s: str(s["verdict"]),
        "readyz": lambda s: "200" if s["code"] == 200 else "503",
        "agent": lambda s: agent_state(s["line"]),
    }
    out_phases = []
    mismatches = []
    totals = {c: {"judged": 0, "matched": 0} for c in channels}
    for ph in phases:
        if ph.applied_s is None or ph.ended_s is None:
            continue
        lo, hi = ph.applied_s + settle_s, ph.ended_s
        row: dict[str, Any] = {
            "index": ph.index,
            "fault": ph.fault,
            "expect": ph.expect,
            "applied_s": round(ph.applied_s, 2),
            "ended_s": round(ph.ended_s, 2),
        }
        # When /status first showed the expected verdict after the switch (the settle time).
        reached = next(
            (
                s["t_end"] - ph.applied_s
                for s in rec.status
                if ph.applied_s <= s["t"] < hi and s["verdict"] == ph.expect
            ),
            None,
        )
        row["reached_after_s"] = None if reached is None else round(reached, 2)
        ok = True
        judged_any = False
        for channel, seen_of in channels.items():
            samples = [s for s in getattr(rec, channel) if s["t"] >= lo and s["t_end"] <= hi]
            want = {
                "status": ph.expect,
                "readyz": "200" if ph.expect == "green" else "503",
                "agent": FAULTS[ph.fault].agent,
            }[channel]
            bad = [s for s in samples if seen_of(s) != want]
            totals[channel]["judged"] += len(samples)
            totals[channel]["matched"] += len(samples) - len(bad)
            row[channel] = {"judged": len(samples), "mismatched": len(bad)}
            judged_any = judged_any or bool(samples)
            ok = ok and not bad
            if not samples and hi - lo >= NO_SAMPLE_WINDOW_S:  # a client that stopped polling
                ok = False
                mismatches.append(
                    {
                        "phase": ph.index,
                        "fault": ph.fault,
                        "channel": channel,
                        "t_s": round(lo, 2),
                        "utc": _utc(rec.t0_wall + lo),
                        "expected": want,
                        "seen": "no sample",
                    }
                )
            for s in bad:
                mismatches.append(
                    {
                        "phase": ph.index,
                        "fault": ph.fault,
                        "channel": channel,
                        "t_s": round(s["t"], 2),
                        "utc": _utc(rec.t0_wall + s["t"]),
                        "expected": want,
                        "seen": seen_of(s),
                    }
                )
        row["result"] = "unjudged" if not judged_any else ("ok" if ok else "mismatch")
        out_phases.append(row)
    judged = [p for p in out_phases if p["result"] != "unjudged"]
    return {
        "settle_s": settle_s,
        "phases": out_phases,
        "phases_judged": len(judged),
        "phases_ok": sum(p["result"] == "ok" for p in judged),
        "samples": totals,
        "mismatches": mismatches,
    }


def slope_per_h(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour; None below 3 points."""
    pts = [(t, v) for t, v in points if v == v]  # NaN (a missed read) left out
    if len(pts) < 3:
        return None
    mt = statistics.fmean(t for t, _ in pts)
    mv = statistics.fmean(v for _, v in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in pts) / den * 3600


def resources(rec: Record, warmup_s: float) -> dict[str, Any]:
    after = [s for s in rec.resources if s["t"] >= warmup_s]
    out: dict[str, Any] = {
        "warmup_s": warmup_s,
        "samples": len(rec.resources),
        "samples_after_warmup": len(after),
        "window_s": round(after[-1]["t"] - after[0]["t"], 1) if len(after) > 1 else 0.0,
    }
    # The second half alone as well: bounded histories (failed results per probe, the window
    # rule's failure times) fill during the first fault phases; a leak keeps growing.
    second = [s for s in after if after and s["t"] >= (after[0]["t"] + after[-1]["t"]) / 2]
    for key in ("rss_mb", "fds", "tasks", "threads"):
        values = [s[key] for s in after if s[key] == s[key]]
        slope = slope_per_h([(s["t"], s[key]) for s in after])
        half = slope_per_h([(s["t"], s[key]) for s in second])
        out[key] = {
            "second_half_slope_per_h": None if half is None else round(half, 3),
            "first": values[0] if values else None,
            "last": values[-1] if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
            "slope_per_h": None if slope is None else round(slope, 3),
            "limit_per_h": LIMITS_PER_H[key],
        }

    def cpu_share(samples: list[dict[str, float]]) -> float | None:
        if len(samples) < 2 or samples[-1]["t"] <= samples[0]["t"]:
            return None
        return (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t"] - samples[0]["t"])

    after_share, all_share = cpu_share(after), cpu_share(rec.resources)
    out["cpu_percent_after_warmup"] = None if after_share is None else round(100 * after_share, 2)
    out["cpu_percent_whole_run"] = None if all_share is None else round(100 * all_share, 2)
    return out


#: Event names that say something went wrong inside sipwatch.
BAD_EVENT = re.compile(r"\bevent=(\S*(?:error|fail|crash|reject|timeout)\S*)")
ERROR_LEVEL = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")


def scan_log(text: str) -> dict[str, Any]:
    """Tracebacks, ERROR/CRITICAL lines and bad event names in the daemon's log."""
    lines = text.splitlines()
    tracebacks = [ln for ln in lines if "Traceback" in ln]
    errors = [ln for ln in lines if ERROR_LEVEL.match(ln)]
    events = [ln for ln in lines if BAD_EVENT.search(ln)]
    return {
        "lines": len(lines),
        "tracebacks": len(tracebacks),
        "error_lines": len(errors),
        "error_events": len(events),
        "examples": (tracebacks + errors + events)[:20],
        "verdict_changes": sum("event=verdict_changed" in ln for ln in lines),
        "config_reloaded": sum("event=config_reloaded" in ln for ln in lines),
    }


def reloads_taken(rec: Record) -> dict[str, Any]:
    """Each SIGHUP: when /status first showed that generation's config hash (None: never)."""
    rows = []
    for r in rec.reloads:
        seen = next(
            (s["t_end"] for s in rec.status if s["t"] >= r["t"] and s["sha"] == r["sha"]), None
        )
        rows.append({**r, "taken_after_s": None if seen is None else round(seen - r["t"], 2)})
    return {
        "sent": len(rows),
        "taken": sum(r["taken_after_s"] is not None for r in rows),
        "max_taken_after_s": max((r["taken_after_s"] or 0.0 for r in rows), default=None),
        "reloads": rows,
    }


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def summarise(
    soak: Soak, phases: list[Phase], args: argparse.Namespace, warmup_s: float, early: str | None
) -> dict[str, Any]:
    rec = soak.rec
    verdicts = judge(phases, rec, args.settle_s)
    res = resources(rec, warmup_s)
    log = scan_log(soak.log_path.read_text(errors="replace"))
    rel = reloads_taken(rec)
    clients = {
        c: {"requests": len(getattr(rec, c)), "errors": sum(e["client"] == c for e in rec.errors)}
        for c in ("status", "readyz", "agent", "metrics")
    }
    runs = rec.status[-1]["runs"] if rec.status else 0
    problems = []
    if early:
        problems.append(early)
    if verdicts["mismatches"]:
        problems.append(f"{len(verdicts['mismatches'])} verdict samples mismatched")
    if verdicts["phases_judged"] == 0:
        problems.append("no phase was judged (no samples)")
    if log["tracebacks"] or log["error_lines"] or log["error_events"]:
        problems.append("the daemon log has tracebacks or errors")
    if rec.errors:
        problems.append(f"{len(rec.errors)} client requests failed")
    crashed = [f for poller in soak.pollers for f in poller.failures]
    if crashed:
        problems.append(f"the bench's own clients failed {len(crashed)} times: {crashed[:3]}")
    if rel["taken"] != rel["sent"]:
        problems.append(f"{rel['sent'] - rel['taken']} reloads not taken")
    if soak.exit_code != 0:
        problems.append(f"the daemon's exit on SIGTERM: {soak.exit_code}")
    slopes_judged = res["window_s"] >= MIN_JUDGED_WINDOW_S
    if slopes_judged:
        for key, limit in LIMITS_PER_H.items():
            slope = res[key]["slope_per_h"]
            if slope is None or abs(slope) > limit:
                problems.append(f"{key} not flat: slope {slope}/h (limit {limit}/h)")
    res["slopes_judged"] = slopes_judged
    return {
        "started_utc": _utc(rec.t0_wall),
        "minutes": args.minutes,
        "phase_s": args.phase_s,
        "settle_s": args.settle_s,
        "reload_s": args.reload_s,
        "probes": 10,
        "sample_s": soak.sample_s,
        "interval_s": INTERVAL_S,
        "timeout_s": TIMEOUT_S,
        "probe_runs": runs,
        "faults": {k: asdict(v) for k, v in FAULTS.items()},
        "work": str(soak.work),
        "resources": res,
        "verdicts": verdicts,
        "reloads": rel,
        "clients": clients,
        "client_errors": rec.errors[:50],
        "log": log,
        "daemon_exit_code": soak.exit_code,
        "result": "PASS" if not problems else "FAIL",
        "problems": problems,
    }


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown(r: dict[str, Any]) -> str:
    res, ver, log, rel = r["resources"], r["verdicts"], r["log"], r["reloads"]
    out = [
        f"# sipwatch daemon soak, {r['started_utc']}: {r['result']}",
        "",
        f"{r['minutes']:g} min of `sipwatch run` against Kamailio: {r['probes']} probes at "
        f"{r['interval_s']:g} s (4 OPTIONS over UDP, 4 over TCP, REGISTER with digest, "
        f"pbx_process), {r['probe_runs']} probe runs; faults of {r['phase_s']:g} s with clean "
        f"phases between, settle {r['settle_s']:g} s; SIGHUP every {r['reload_s']:g} s; "
        "/status, /readyz and agent-check polled every second, /metrics every 2 s. "
        f"Work directory (daemon log): `{r['work']}`.",
        "",
        f"## Resources (sampled every {r['sample_s']:g} s)",
        "",
        f"Slopes: least squares over the {res['samples_after_warmup']} samples after a "
        f"{res['warmup_s']:g} s warm-up ({res['window_s'] / 60:.1f} min); judged against the "
        "limit only when that window is at least "
        f"{MIN_JUDGED_WINDOW_S / 60:.0f} min "
        f"({'judged' if res['slopes_judged'] else 'not judged: too short'}).",
        "",
        "| resource | first | last | min | max | slope / h | 2nd half slope / h | limit / h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "rss_mb": "RSS (MB)",
        "fds": "open fds",
        "tasks": "asyncio tasks",
        "threads": "threads",
    }
    for key, label in names.items():
        x = res[key]
        out.append(
            f"| {label} | {_fmt(x['first'])} | {_fmt(x['last'])} | {_fmt(x['min'])} | "
            f"{_fmt(x['max'])} | {_fmt(x['slope_per_h'])} | "
            f"{_fmt(x['second_half_slope_per_h'])} | {_fmt(x['limit_per_h'])} |"
        )
    out += [
        "",
        f"CPU: {_fmt(res['cpu_percent_after_warmup'])} % of one core after the warm-up "
        f"({_fmt(res['cpu_percent_whole_run'])} % over the whole run).",
        "",
        "## Verdicts",
        "",
        f"Phases matching on every channel: **{ver['phases_ok']} / {ver['phases_judged']}**. "
        "Samples matching: "
        + ", ".join(f"{c} {v['matched']} / {v['judged']}" for c, v in ver["samples"].items())
        + ".",
        "",
        "| fault | /status | agent-check | phases | ok | settle p50 / max (s) |",
        "|---|---|---|---|---|---|",
    ]
    by_fault: dict[str, list[dict[str, Any]]] = {}
    for p in ver["phases"]:
        by_fault.setdefault(p["fault"], []).append(p)
    for fault, rows in by_fault.items():
        judged = [p for p in rows if p["result"] != "unjudged"]
        reached = [p["reached_after_s"] for p in rows if p["reached_after_s"] is not None]
        settle = f"{statistics.median(reached):.2f} / {max(reached):.2f}" if reached else "-"
        out.append(
            f"| {fault}: {r['faults'][fault]['what']} | {rows[0]['expect']} | "
            f"{r['faults'][fault]['agent']} | {len(judged)} | "
            f"{sum(p['result'] == 'ok' for p in judged)} | {settle} |"
        )
    if ver["mismatches"]:
        out += ["", "Mismatches:", "", "| UTC | t (s) | phase | channel | expected | seen |"]
        out.append("|---|---|---|---|---|---|")
        for m in ver["mismatches"][:100]:
            out.append(
                f"| {m['utc']} | {m['t_s']} | {m['phase']} {m['fault']} | {m['channel']} | "
                f"{m['expected']} | {m['seen']} |"
            )
    out += [
        "",
        "## Reloads, clients, log",
        "",
        f"- SIGHUP reloads: {rel['sent']} sent, {rel['taken']} taken (new config hash on "
        f"/status), slowest {_fmt(rel['max_taken_after_s'])} s.",
        "- Client requests (errors): "
        + ", ".join(f"{c} {v['requests']} ({v['errors']})" for c, v in r["clients"].items())
        + ".",
        f"- Daemon log: {log['lines']} lines, {log['tracebacks']} `Traceback`, "
        f"{log['error_lines']} ERROR lines, {log['error_events']} error events; "
        f"{log['verdict_changes']} verdict changes, {log['config_reloaded']} reloads logged.",
        f"- Exit on SIGTERM: {r['daemon_exit_code']}.",
    ]
    if log["examples"]:
        out += ["", "```", *log["examples"], "```"]
    if r["problems"]:
        out += ["", "Problems:", "", *[f"- {p}" for p in r["problems"]]]
    return "\n".join(out) + "\n"


@dataclass
class SoakRun:
    report: dict[str, Any]
    record: Record
    phases: list[Phase]


def run_soak(
    work: Path,
    *,
    total_s: float,
    phase_s: float,
    settle_s: float,
    reload_s: float,
    lead_s: float,
    faults: Sequence[str] = FAULT_ORDER,
    sample_s: float = SAMPLE_S,
    warmup_s: float | None = None,
) -> SoakRun:
    """One soak run: its summary (what the JSON file holds) and what it was made from.
    Everything started is stopped before this returns."""
    args = argparse.Namespace(
        minutes=round(total_s / 60, 2), phase_s=phase_s, settle_s=settle_s, reload_s=reload_s
    )
    phases = build_schedule(total_s, phase_s, lead_s, faults)
    reloads = reload_times(total_s, reload_s) if reload_s > 0 else []
    warm = min(300.0, 0.2 * total_s) if warmup_s is None else warmup_s
    soak = Soak(work, sample_s)
    early: str | None = None
    try:
        soak.start()
        soak.start_clients()
        early = soak.run_schedule(phases, reloads)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, SIGTERM: report what was seen
        if soak.proc is None:
            raise
        early = f"interrupted at {soak.rec.now():.0f} s ({exc!r})"
    except Exception as exc:  # the rig failed mid-run (e.g. kamcmd timed out): still report
        if soak.proc is None:
            raise
        traceback.print_exc()
        early = f"the rig failed at {soak.rec.now():.0f} s: {exc!r}"
    finally:
        soak.close()
    return SoakRun(summarise(soak, phases, args, warm, early), soak.rec, phases)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--phase-s", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--settle-s", type=float, default=10.0, help="not judged after a switch")
    ap.add_argument("--reload-s", type=float, help="SIGHUP period (default min(150, run/4))")
    ap.add_argument("--lead-s", type=float, default=30.0, help="the clean lead-in")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    ap.add_argument("--work", type=Path, help="work directory (default: a new one in /tmp)")
    args = ap.parse_args()
    total_s = args.minutes * 60
    if total_s < 60 or args.phase_s <= args.settle_s or args.settle_s < 0:
        ap.error("--minutes must be >= 1 and --phase-s longer than --settle-s")
    if args.reload_s is None:
        args.reload_s = min(150.0, max(20.0, total_s / 4))
    work = args.work or Path(tempfile.mkdtemp(prefix="sipwatch-soak-"))

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # the finally blocks stop everything

    signal.signal(signal.SIGTERM, terminate)
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    report = run_soak(
        work,
        total_s=total_s,
        phase_s=args.phase_s,
        settle_s=args.settle_s,
        reload_s=args.reload_s,
        lead_s=args.lead_s,
    ).report
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"soak-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {base}.json, {base}.md")
    return 0 if report["result"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
