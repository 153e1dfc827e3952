"""`pbx_process`: is the local PBX process running, and is it frozen? (psutil)

Owns: finding the PBX's main process — by pidfile, by the process listening on the SIP port,
or by name / command-line pattern, tried in that order — then judging its whole process
tree (the main process and all its descendants: Kamailio and PortSIP run many processes),
and remembering the main process between runs to count restarts.

"Up but not answering SIP" is not this probe's to tell: a running, unfrozen PBX is `ok` here
and the SIP probes say whether it answers. Together they let the OCF shim tell "not running"
(this probe: down) apart from "running but failed" (SIP probes fail, this one is ok).

Outcomes:
    ok        running; no process of the tree stopped
    degraded  running, but some (not all) processes of the tree are stopped (T)
    hung      every process of the tree is stopped (T/t) or zombie: frozen (blocks takeover:
              a frozen PBX keeps its ports and files until someone kills it)
    down      not running (or only zombies left). Blocks takeover only with
              `always_running = true`: where Pacemaker starts the PBX together with the VIP
              (the PortSIP layout), a standby node runs no PBX by design and taking over
              means starting it; where the PBX runs on every node and only the VIP moves,
              a node without a running PBX cannot serve.
    local_error  bad pidfile path permissions, psutil missing, nothing to search by
Wake-up: each run that finds the PBX arms a pidfd on its main process (`exit_watch`): its
exit makes every probe run at once (sipwatch.probes._wake).
Restarts: `extra["restarts"]` counts main-process changes (PID or start time) seen by this
memory (`ProbeContext.memory`, kept by the daemon; empty for one-shot runs), and
`extra["previous_pid"]` names the one before. CPU percent needs a previous run too.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sipwatch.model import Outcome, ProbeResult
from sipwatch.numbers import ascii_int
from sipwatch.probes._sip import FORBID_EXTRA, ProbeContext
from sipwatch.probes._wake import ExitWatch
from sipwatch.probes.kind import ProbeKind, WakeAll, check_timing

if TYPE_CHECKING:
    import psutil

_MAX_PIDS_LISTED = 64
#: Linux's PID_MAX_LIMIT (2**22, include/linux/threads.h): no pid_max can be set above it.
PID_MAX_LIMIT = 4_194_304


@dataclass(frozen=True, kw_only=True, slots=True)
class PbxProcessSpec:
    __pydantic_config__ = FORBID_EXTRA

    kind: Literal["pbx_process"] = "pbx_process"
    name: str = ""
    pidfile: str | None = None  # a file holding the main PID (first line)
    listen_port: int | None = None  # the process holding this local port (SIP: 5060)
    listen_transport: Literal["udp", "tcp"] = "udp"
    process_name: str | None = None  # exact process name (comm) or executable base name
    cmdline_regex: str | None = None  # searched in the command line joined with spaces
    always_running: bool = False  # the PBX runs on every node: "down" blocks takeover
    timeout_s: float = 2.0
    interval_s: float = 5.0
    pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.pidfile or self.listen_port or self.process_name or self.cmdline_regex):
            raise ValueError(
                "give at least one of pidfile, listen_port, process_name, cmdline_regex"
            )
        if self.listen_port is not None and not 0 < self.listen_port < 65536:
            raise ValueError("listen_port must be 1..65535")
        check_timing(self.timeout_s, self.interval_s)
        pattern = None
        if self.cmdline_regex is not None:
            try:
                pattern = re.compile(self.cmdline_regex)
            except re.error as exc:
                raise ValueError(f"cmdline_regex: {exc}") from None
        object.__setattr__(self, "pattern", pattern)
        if not self.name:
            what = self.process_name or self.pidfile or self.cmdline_regex or self.listen_port
            object.__setattr__(self, "name", f"pbx_process:{what}")


@dataclass(slots=True)
class ProcessMemory:
    """What the probe remembers about its PBX between runs (one per probe name)."""

    pid: int | None = None
    create_time: float | None = None
    restarts: int = 0
    previous_pid: int | None = None
    cpu_s: float | None = None
    sampled_at: float | None = None


def _matches(spec: PbxProcessSpec, proc: psutil.Process) -> bool:
    """Does the process look like the PBX by name/pattern? True when neither is set."""
    import psutil

    if spec.process_name is None and spec.pattern is None:
        return True
    try:
        if spec.process_name is not None:
            exe_base = (proc.exe() or "").rsplit("/", 1)[-1]
            if spec.process_name not in (proc.name(), exe_base):
                return False
        if spec.pattern is not None:
            return spec.pattern.search(" ".join(proc.cmdline())) is not None
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return spec.process_name is not None and proc.name() == spec.process_name


def _from_pidfile(spec: PbxProcessSpec, notes: list[str]) -> psutil.Process | None:
    import psutil

    assert spec.pidfile is not None
    try:
        with open(spec.pidfile, encoding="ascii", errors="replace") as fh:
            text = fh.readline().strip()
    except FileNotFoundError:
        notes.append(f"no pidfile {spec.pidfile}")
        return None
    except OSError as exc:
        notes.append(f"cannot read pidfile {spec.pidfile}: {exc.strerror}")
        return None
    try:
        pid = ascii_int(text, "PID", low=1, high=PID_MAX_LIMIT)
    except ValueError as exc:  # int() alone would raise on a pidfile of 5,000 digits
        notes.append(f"pidfile {spec.pidfile} holds no PID ({exc})")
        return None
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        notes.append(f"pidfile names pid {pid}, which is not running (stale pidfile)")
        return None
    if not _matches(spec, proc):
        notes.append(f"pidfile names pid {pid}, which is not the PBX (stale pidfile)")
        return None
    return proc


def _climb(spec: PbxProcessSpec, proc: psutil.Process) -> psutil.Process:
    """From a worker up to the main process: parents running the same program."""
    import psutil

    try:
        exe = proc.exe()
        while True:
            parent = proc.parent()
            if parent is None or parent.pid <= 1 or parent.exe() != exe:
                return proc
            proc = parent
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return proc


def _from_port(spec: PbxProcessSpec, notes: list[str]) -> psutil.Process | None:
    import psutil

    kind = "udp" if spec.listen_transport == "udp" else "tcp"
    try:
        conns = psutil.net_connections(kind=kind)
    except psutil.AccessDenied:
        notes.append("not permitted to list sockets (needs root)")
        return None
    pids = sorted(
        {
            c.pid
            for c in conns
            if c.pid
            and c.laddr
            and c.laddr.port == spec.listen_port
            and (kind == "udp" or c.status == psutil.CONN_LISTEN)
        }
    )
    for pid in pids:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        if _matches(spec, proc):
            return _climb(spec, proc)
    notes.append(f"nothing of the PBX holds {spec.listen_transport} port {spec.listen_port}")
    return None


def _from_pattern(spec: PbxProcessSpec, notes: list[str]) -> psutil.Process | None:
    import psutil

    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if _matches(spec, proc):
            found[proc.pid] = proc
    tops = []
    for proc in found.values():
        try:
            if proc.ppid() not in found:
                tops.append((proc.create_time(), proc.pid, proc))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    if not tops:
        notes.append("no process matches the name/pattern")
        return None
    tops.sort(key=lambda t: (t[0], t[1]))
    if len(tops) > 1:
        notes.append(f"{len(tops)} separate matching process trees; judging the oldest")
    return tops[0][2]


def find_main(spec: PbxProcessSpec, notes: list[str]) -> tuple[psutil.Process | None, str]:
    """The PBX's main process and how it was found ("" when not found)."""
    if spec.pidfile:
        proc = _from_pidfile(spec, notes)
        if proc is not None:
            return proc, "pidfile"
    if spec.listen_port:
        proc = _from_port(spec, notes)
        if proc is not None:
            return proc, "listen_port"
    if spec.process_name or spec.pattern:
        proc = _from_pattern(spec, notes)
        if proc is not None:
            return proc, "name"
    return None, ""


@dataclass(slots=True)
class TreeStats:
    pids: list[int] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    stopped: list[int] = field(default_factory=list)
    zombies: list[int] = field(default_factory=list)
    rss_bytes: int = 0
    cpu_s: float = 0.0
    open_fds: int | None = 0
    threads: int = 0


def tree_stats(main: psutil.Process) -> TreeStats:
    import psutil

    stopped = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP}
    dead = {psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}
    stats = TreeStats()
    try:
        procs = [main, *main.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        procs = [main]
    for proc in procs:
        try:
            with proc.oneshot():
                status = proc.status()
                stats.pids.append(proc.pid)
                stats.states[status] = stats.states.get(status, 0) + 1
                if status in stopped:
                    stats.stopped.append(proc.pid)
                    continue_stats = True
                elif status in dead:
                    stats.zombies.append(proc.pid)
                    continue_stats = False
                else:
                    continue_stats = True
                if continue_stats:
                    stats.rss_bytes += proc.memory_info().rss
                    times = proc.cpu_times()
                    stats.cpu_s += times.user + times.system
                    stats.threads += proc.num_threads()
                    if stats.open_fds is not None:
                        try:
                            stats.open_fds += proc.num_fds()
                        except psutil.AccessDenied:
                            stats.open_fds = None
        except psutil.NoSuchProcess:
            continue  # exited while we looked
        except psutil.AccessDenied:
            stats.open_fds = None
    return stats


def _observe(spec: PbxProcessSpec, memory: ProcessMemory) -> ProbeResult:
    try:
        import psutil
    except ImportError:  # pragma: no cover - a dependency of sipwatch
        return _result(spec, Outcome.LOCAL_ERROR, "psutil is not installed")
    notes: list[str] = []
    main, found_by = find_main(spec, notes)
    extra: dict[str, Any] = {"running": False, "restarts": memory.restarts}
    if memory.previous_pid is not None:
        extra["previous_pid"] = memory.previous_pid
    if main is None:
        if memory.pid is not None:
            extra["last_pid"] = memory.pid
        return _result(
            spec,
            Outcome.DOWN,
            "PBX not running: " + "; ".join(notes),
            blocks_takeover=spec.always_running,
            extra=extra,
        )
    now = time.time()
    try:
        create_time = main.create_time()
    except psutil.Error:
        create_time = now
    if memory.pid is not None and (memory.pid, memory.create_time) != (main.pid, create_time):
        memory.restarts += 1
        memory.previous_pid = memory.pid
        extra.update(restarted=True, previous_pid=memory.pid, restarts=memory.restarts)
        notes.insert(0, f"restarted: pid {memory.pid} -> {main.pid}")
        memory.cpu_s = memory.sampled_at = None
    memory.pid, memory.create_time = main.pid, create_time

    stats = tree_stats(main)
    sampled_at = time.monotonic()
    cpu_percent = None
    if memory.cpu_s is not None and memory.sampled_at is not None:
        elapsed = sampled_at - memory.sampled_at
        if elapsed > 0:
            cpu_percent = round(max(0.0, stats.cpu_s - memory.cpu_s) / elapsed * 100, 1)
    memory.cpu_s, memory.sampled_at = stats.cpu_s, sampled_at

    count = len(stats.pids)
    extra.update(
        running=True,
        pid=main.pid,
        found_by=found_by,
        processes=count,
        pids=stats.pids[:_MAX_PIDS_LISTED],
        states=stats.states,
        uptime_s=round(max(0.0, now - create_time), 1),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(create_time)),
        rss_bytes=stats.rss_bytes,
        cpu_s=round(stats.cpu_s, 2),
        cpu_percent=cpu_percent,
        open_fds=stats.open_fds,
        threads=stats.threads,
        stopped_pids=stats.stopped[:_MAX_PIDS_LISTED],
        zombie_pids=stats.zombies[:_MAX_PIDS_LISTED],
    )
    frozen = len(stats.stopped) + len(stats.zombies)
    if count and len(stats.zombies) == count:
        outcome, blocks = Outcome.DOWN, spec.always_running
        notes.append(f"main process {main.pid} exited (zombie, not yet reaped)")
        extra["running"] = False
    elif count and frozen == count:
        outcome, blocks = Outcome.HUNG, True
        notes.append(f"all {count} processes stopped or zombie: the PBX is frozen")
    elif stats.stopped:
        outcome, blocks = Outcome.DEGRADED, False
        notes.append(f"{len(stats.stopped)} of {count} processes stopped: {stats.stopped[:8]}")
    else:
        outcome, blocks = Outcome.OK, False
        notes.insert(0, f"running: pid {main.pid}, {count} processes (found by {found_by})")
    return _result(
        spec,
        outcome,
        "; ".join(n for n in notes if n),
        blocks_takeover=blocks,
        extra=extra,
    )


def _result(spec: PbxProcessSpec, outcome: Outcome, detail: str, **kw: Any) -> ProbeResult:
    target = spec.pidfile or spec.process_name or spec.cmdline_regex or str(spec.listen_port)
    return ProbeResult(
        probe=spec.name,
        kind=spec.kind,
        target=target,
        outcome=outcome,
        detail=detail,
        scope="node",
        **kw,
    )


async def probe(spec: PbxProcessSpec, ctx: ProbeContext) -> ProbeResult:
    import asyncio

    memory = ctx.memory.slot(spec.name, ProcessMemory, ProcessMemory)
    # psutil reads /proc synchronously; a socket scan (listen_port) walks every process's
    # fds, so it runs off the event loop.
    return await asyncio.to_thread(_observe, spec, memory)


def _running_pid(result: ProbeResult) -> int | None:
    pid = result.extra.get("pid") if result.extra.get("running") else None
    return pid if isinstance(pid, int) else None


def exit_watch(spec: PbxProcessSpec, wake_all: WakeAll) -> ExitWatch:
    """A pidfd on the main process each run finds: when the PBX exits, every probe runs at
    once, so a crash is judged within milliseconds instead of at the next interval."""
    return ExitWatch(wake_all, _running_pid, "pbx")


KIND = ProbeKind(name="pbx_process", spec=PbxProcessSpec, probe=probe, wake=exit_watch)
