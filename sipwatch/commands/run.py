"""`sipwatch run`: the daemon, with its HTTP endpoint, until SIGTERM.

SIGTERM/SIGINT: stop probing, let in-flight probes and actions finish (bounded by
`daemon.shutdown_timeout_s`), exit 0. SIGHUP: reload the config; a bad config is rejected
loudly and the running one kept. Exit 6 when the config is bad at start.
"""

from __future__ import annotations

import argparse
import logging
import socket
from typing import TYPE_CHECKING, Any

from sipwatch.exitcodes import RUN_BAD_CONFIG as EXIT_CONFIG

if TYPE_CHECKING:
    from sipwatch.agent_check import AgentCheckServer
    from sipwatch.cluster.agents import ClusterAgent
    from sipwatch.cluster.audit import AuditRecord
    from sipwatch.cluster.fencing import FencingWatch
    from sipwatch.cluster.quorum import QuorumGuard
    from sipwatch.config import Settings
    from sipwatch.daemon import Daemon
    from sipwatch.hooks import HookRunner
    from sipwatch.http import Holder
    from sipwatch.model import Decision, ProbeResult, Verdict
    from sipwatch.policy import Policy
    from sipwatch.track_file import TrackFile
    from sipwatch.verdict_file import VerdictFile


def configure(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="run the daemon (probes, policy, cluster agent, HTTP)", description=__doc__
    )
    p.add_argument(
        "--config",
        default="kamailio-lab",
        metavar="FILE|NAME",
        help="config file or shipped probe set name (default kamailio-lab)",
    )
    p.add_argument("--http", metavar="HOST:PORT", help="override daemon.http_host/http_port")
    p.add_argument("--log-format", choices=("text", "json"), help="override log_format")


def run(args: argparse.Namespace) -> int:
    import sys

    from sipwatch.errors import ConfigError
    from sipwatch.event_loop import run as run_on_loop

    try:
        return run_on_loop(_main(args))
    except ConfigError as exc:  # SIPWATCH_EVENT_LOOP names no usable loop
        print(f"sipwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _load(args: argparse.Namespace) -> tuple[Settings, Policy, dict[str, str]]:
    """Settings, policy, and what /status reports about the config (its path and sha256,
    which `sipwatch check` compares before trusting this daemon's verdict)."""
    from sipwatch.catalog import find_config
    from sipwatch.config import load_config
    from sipwatch.errors import ConfigError
    from sipwatch.policy import load_policy

    settings, digest = load_config(args.config)  # one read: the digest is of what runs
    path = find_config(args.config)
    if not settings.probes:
        # A daemon with nothing to judge would say green (and ready) for ever: an empty or
        # half-written file (a reload read it mid-write) is refused like any bad config.
        raise ConfigError(f"{path}: no probes configured: nothing to watch")
    if args.http:
        from sipwatch.numbers import ascii_int

        host, _, port = args.http.rpartition(":")
        # model_copy does not validate: check here what the config would (0 = no endpoint).
        http_port = ascii_int(port, "--http port", low=0, high=65535, error=ConfigError)
        daemon = settings.daemon.model_copy(
            update={"http_host": host or "127.0.0.1", "http_port": http_port}
        )
        settings = settings.model_copy(update={"daemon": daemon})
    if args.log_format:
        settings = settings.model_copy(update={"log_format": args.log_format})
    policy = load_policy(settings.policy, relative_to=path.parent)
    return settings, policy, {"config_path": str(path.resolve()), "config_sha256": digest}


def _make_daemon(
    settings: Settings, policy: Policy, meta: dict[str, str], holder: Holder
) -> Daemon:
    """The daemon of one config: its probes, agent and observers (the metrics, the verdict
    file, the track file, the hooks), and its side tasks (the verdict and track files'
    heartbeats, the hook runners, the quorum guard)."""
    from sipwatch.daemon import Daemon, DaemonObserver, DaemonOptions, SideTask
    from sipwatch.secret_files import exposed

    for probe, path, mode in exposed(settings.probes):  # at start and at each reload
        logging.getLogger("sipwatch.run").warning(
            "event=password_file_readable_by_others probe=%s path=%s mode=%o", probe, path, mode
        )
    d = settings.daemon
    options = DaemonOptions(
        jitter=d.jitter,
        history=d.history,
        failure_history=d.failure_history,
        reassert_s=d.reassert_s,
    )
    import dataclasses

    daemon = Daemon(
        list(settings.probes),
        # daemon.keep_connections: stream connections stay open between runs (closed at
        # exit: see _main). Off by default: the lab's ws_dead fault (new WebSocket upgrades
        # refused) went unseen over a kept connection.
        dataclasses.replace(settings.context(), keep_connections=settings.daemon.keep_connections),
        policy,
        agent=_make_agent(settings),
        options=options,
        observers=[holder.metrics],
        policy_name=settings.policy,
    )
    daemon.meta = dict(meta)
    verdict_file = _make_verdict_file(settings, daemon, meta)
    if verdict_file is not None:
        daemon.side_tasks.append(SideTask("verdict-file", verdict_file.run))
        observer: DaemonObserver = _VerdictFileObserver(verdict_file)
        daemon.observers.append(observer)
    track_file = _make_track_file(settings, daemon)
    if track_file is not None:
        daemon.side_tasks.append(SideTask("track-file", track_file.run))
        daemon.observers.append(_TrackFileObserver(track_file))
    runners = _make_hooks(settings)
    if runners:
        hooks = _HooksObserver(runners, daemon)
        daemon.side_tasks.append(SideTask("hooks", hooks.run))
        daemon.observers.append(hooks)
    guard = _make_quorum_guard(settings, daemon)
    if guard is not None:
        daemon.side_tasks.append(SideTask("quorum-guard", guard.run))
    watch = _make_fencing_watch(settings, daemon)
    if watch is not None:
        daemon.side_tasks.append(SideTask("fencing-watch", watch.run))
        daemon.status_sections["fencing"] = watch.status
    return daemon


def _make_fencing_watch(settings: Settings, daemon: Daemon) -> FencingWatch | None:
    """The fencing watch (cluster/fencing.py) where sipwatch works with the cluster: what
    /status says of fencing, and an audit record for each fence seen (a failed one says why
    Pacemaker recovers nothing). It reads; it never acts."""
    c = settings.cluster
    if c.fencing_watch_s <= 0 or (c.agent == "none" and not c.release_vip_without_quorum):
        return None
    from sipwatch.cluster.audit import AuditLog
    from sipwatch.cluster.fencing import FencingWatch, read_state
    from sipwatch.cluster.pacemaker import PacemakerTools, ToolPolicy

    tools = PacemakerTools(
        cib_file=c.cib_file,
        policy=ToolPolicy(timeout_s=c.tool_timeout_s, attempts=1, total_s=c.tool_timeout_s),
    )
    if daemon.agent is not None:
        node, resource, audit = daemon.agent.node, daemon.agent.resource, daemon.agent.audit
    else:
        node = c.node or socket.gethostname()
        resource, audit = c.resource, AuditLog(c.audit_size, c.audit_log)
    return FencingWatch(
        read=lambda: read_state(tools.cluster_option, tools.fence_history),
        audit=audit,
        node=node,
        resource=resource,
        interval_s=c.fencing_watch_s,
    )


class _VerdictFileObserver:
    """Rewrites the verdict file at once when the verdict changes (not at its heartbeat)."""

    def __init__(self, verdict_file: VerdictFile) -> None:
        self.verdict_file = verdict_file

    def on_result(self, result: ProbeResult, now: float) -> None:
        return None

    def on_decision(self, decision: Decision) -> None:
        self.verdict_file.changed()

    def on_action(self, record: AuditRecord) -> None:
        return None


class _TrackFileObserver:
    """Rewrites keepalived's track file at once when the verdict changes."""

    def __init__(self, track_file: TrackFile) -> None:
        self.track_file = track_file

    def on_result(self, result: ProbeResult, now: float) -> None:
        return None

    def on_decision(self, decision: Decision) -> None:
        self.track_file.changed()

    def on_action(self, record: AuditRecord) -> None:
        return None


class _HooksObserver:
    """Hands each verdict change (old -> new) to every hook runner, and runs them. The old
    verdict is the daemon's when the runners start (after a reload: the adopted one)."""

    def __init__(self, runners: list[HookRunner], daemon: Daemon) -> None:
        self.runners = runners
        self.daemon = daemon
        self._last: Verdict | None = None

    async def run(self, stop: Any) -> None:
        import asyncio

        self._last = self.daemon.decision.verdict
        async with asyncio.TaskGroup() as group:
            for runner in self.runners:
                group.create_task(runner.run(stop), name=f"hook:{runner.spec.label}")

    def on_result(self, result: ProbeResult, now: float) -> None:
        return None

    def on_decision(self, decision: Decision) -> None:
        old, self._last = self._last, decision.verdict
        if old is None or old is decision.verdict:
            return  # not running yet, or the same verdict again (a /metrics refresh)
        for runner in self.runners:
            runner.changed(old, decision)

    def on_action(self, record: AuditRecord) -> None:
        return None


def _make_track_file(settings: Settings, daemon: Daemon) -> TrackFile | None:
    """keepalived's track file (sipwatch/track_file.py), or None when it is off; a path
    that cannot be written is a config error."""
    from pathlib import Path

    from sipwatch.errors import ConfigError
    from sipwatch.track_file import TrackFile

    where = settings.daemon.track_file
    if not where:
        return None
    path = Path(where)
    try:
        TrackFile.prepare(path)
    except OSError as exc:
        raise ConfigError(f"daemon.track_file: cannot write {path}: {exc.strerror}") from None

    def current() -> Decision | None:
        return None if daemon.waiting_for_first_results() else daemon.decision

    return TrackFile(path, current)


def _make_hooks(settings: Settings) -> list[HookRunner]:
    """A runner per `[[hooks]]` entry; a command that is not an executable is a config
    error (found now, not at 3 a.m. when the verdict first changes)."""
    import os
    import shutil

    from sipwatch.errors import ConfigError
    from sipwatch.hooks import HookRunner

    node = settings.cluster.node or socket.gethostname()
    runners = []
    for i, spec in enumerate(settings.hooks):
        command = spec.argv[0]
        found = shutil.which(command) if "/" not in command else command
        if found is None or not (os.path.isfile(found) and os.access(found, os.X_OK)):
            raise ConfigError(f"hooks[{i}].argv[0]: {command!r} is not an executable file")
        runners.append(HookRunner(spec, node))
    return runners


def _make_verdict_file(
    settings: Settings, daemon: Daemon, meta: dict[str, str]
) -> VerdictFile | None:
    """The verdict file (sipwatch/verdict_file.py), or None when it is off. A path that was
    configured and cannot be written is a config error; the default one (/run/sipwatch, root
    only) is skipped with a warning, so `sipwatch run` as a user still runs."""
    from pathlib import Path

    from sipwatch.commands.check import exit_code
    from sipwatch.config import DEFAULT_VERDICT_FILE
    from sipwatch.errors import ConfigError
    from sipwatch.verdict_file import VerdictFile

    where = settings.daemon.verdict_file
    if not where:
        return None
    path = Path(where)
    try:
        VerdictFile.prepare(path)
    except OSError as exc:
        if where != DEFAULT_VERDICT_FILE:
            raise ConfigError(f"daemon.verdict_file: cannot write {path}: {exc.strerror}") from None
        logging.getLogger("sipwatch.run").warning(
            "event=verdict_file_off path=%s error=%r", path, exc.strerror
        )
        return None

    def current() -> Any:
        if daemon.waiting_for_first_results():
            return None
        return daemon.decision, exit_code(daemon.decision, tuple(daemon.last.values()))

    return VerdictFile(
        path, current, config=Path(meta["config_path"]), config_sha256=meta["config_sha256"]
    )


def _make_quorum_guard(settings: Settings, daemon: Daemon) -> QuorumGuard | None:
    """The quorum guard (cluster/quorum.py) when `cluster.release_vip_without_quorum` is on:
    on the VIP of the config's vip probe, auditing to the agent's audit log (or, with no
    agent, to cluster.audit_log)."""
    c = settings.cluster
    if not c.release_vip_without_quorum:
        return None
    # Settings checked at load time that a vip probe exists.
    from sipwatch.probes.vip import VipSpec

    vip = next(p for p in settings.probes if isinstance(p, VipSpec))
    from sipwatch.cluster.pacemaker import PacemakerTools, ToolPolicy
    from sipwatch.cluster.quorum import QuorumGuard, quorum_argv

    tools = PacemakerTools(
        cib_file=c.cib_file,
        policy=ToolPolicy(timeout_s=c.tool_timeout_s, attempts=1, total_s=c.tool_timeout_s),
    )

    def read_policy() -> str | None:
        from sipwatch.errors import ClusterError

        try:
            return tools.cluster_option("no-quorum-policy") or "stop"  # Pacemaker's default
        except ClusterError as exc:
            logging.getLogger("sipwatch.cluster").warning(
                "event=no_quorum_policy_unread error=%r", str(exc)
            )
            return None

    if daemon.agent is not None:
        node, resource, audit = daemon.agent.node, daemon.agent.resource, daemon.agent.audit
    else:  # the OCF shim is the path to Pacemaker (agent "none"): the guard still audits
        from sipwatch.cluster.audit import AuditLog

        node = c.node or socket.gethostname()
        resource, audit = c.resource, AuditLog(c.audit_size, c.audit_log)
    return QuorumGuard(
        address=vip.address,
        interface=vip.interface,
        node=node,
        resource=resource,
        audit=audit,
        read_policy=read_policy,
        argv=quorum_argv(c.quorum_tool),
        dry_run=c.dry_run,
        on_release=daemon.wake_all,
    )


def _make_agent(settings: Settings) -> ClusterAgent | None:
    if settings.cluster.agent == "none":
        return None
    from sipwatch.cluster import agent_from_settings

    return agent_from_settings(settings.cluster)


#: Where the agent locks of the live cluster live (beside the verdict file).
LOCK_DIR = "/run/sipwatch"


def _lock_agent(settings: Settings, node: str, log: logging.Logger) -> int | None:
    """One cluster agent per node: a second `sipwatch run` for the same node (and the same
    cluster: the live one, or the same CIB file) would fight the first over the node's
    health attribute, bans and standby. Take an exclusive flock on a file named after the
    node, held until exit (the kernel drops it when the process dies, even by SIGKILL); a
    held lock refuses the start, naming the holder's PID. A lock that cannot be created
    (a user without /run/sipwatch) is warned about, not fatal. Returns the lock's fd, which
    the caller keeps open for the process's life. Raises ConfigError."""
    import fcntl
    import os
    from pathlib import Path

    from sipwatch.errors import ConfigError

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node)
    cib = settings.cluster.cib_file
    path = Path(f"{cib}.sipwatch-{safe}.lock") if cib else Path(LOCK_DIR) / f"agent-{safe}.lock"
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        log.warning("event=agent_lock_off path=%s error=%r", path, exc.strerror)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        log.error("event=agent_locked node=%s path=%s holder_pid=%s", node, path, holder)
        raise ConfigError(
            f"another sipwatch (pid {holder}) already runs the cluster agent for node "
            f"{node!r} (lock {path}); stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _no_core_dumps() -> None:
    """The daemon holds passwords (digest, read from files or the environment): a core dump
    would write them to disk for anyone who can read /var/lib/systemd/coredump. Soft and hard
    limit 0, so a child (a hook) cannot raise it either; systemd-coredump honours the limit
    too when core_pattern is a pipe."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def _main(args: argparse.Namespace) -> int:
    from sipwatch import logs
    from sipwatch.errors import ConfigError
    from sipwatch.http import Holder

    _no_core_dumps()
    try:
        settings, policy, meta = _load(args)
    except ConfigError as exc:
        print(f"sipwatch: {exc}")
        return EXIT_CONFIG
    logs.setup(settings.log_level, settings.log_format)
    log = logging.getLogger("sipwatch.run")
    holder = Holder(ready_when_yellow=settings.daemon.ready_when_yellow)
    try:
        holder.daemon = _make_daemon(settings, policy, meta, holder)
    except ConfigError as exc:
        log.error("event=config_invalid error=%r", str(exc))
        print(f"sipwatch: {exc}")
        return EXIT_CONFIG
    lock = None
    if (
        holder.daemon.agent is not None and not settings.cluster.dry_run
    ):  # a dry run changes nothing
        try:
            lock = _lock_agent(settings, holder.daemon.agent.node, log)
        except ConfigError as exc:
            print(f"sipwatch: {exc}")
            return EXIT_CONFIG
    try:
        return await _serve(args, settings, holder, log)
    finally:
        if lock is not None:
            import os

            os.close(lock)


async def _serve(
    args: argparse.Namespace, settings: Settings, holder: Holder, log: logging.Logger
) -> int:
    from sipwatch.errors import ConfigError

    try:
        runner = await _start_http(settings, holder, log)
    except ConfigError as exc:
        log.error("event=config_invalid error=%r", str(exc))
        print(f"sipwatch: {exc}")
        return EXIT_CONFIG
    except OSError:
        return EXIT_CONFIG
    try:
        agent_check = await _start_agent_check(settings, holder, log)
    except OSError:
        if runner is not None:
            await runner.cleanup()
        return EXIT_CONFIG
    try:
        return await _supervise(args, settings, holder, log)
    finally:
        if agent_check is not None:
            await agent_check.close()
        if runner is not None:
            await runner.cleanup()


async def _start_http(settings: Settings, holder: Holder, log: logging.Logger) -> Any:
    """The HTTP endpoint's runner, or None when it is off. A bind failure is logged and
    re-raised (exit 6: the configured address is unusable)."""
    from sipwatch.http import start_server
    from sipwatch.http_security import BasicAuth, load_users, tls_context

    d = settings.daemon
    if not d.http_port:
        return None
    context = (
        tls_context(d.http_tls_cert_file, d.http_tls_key_file) if d.http_tls_cert_file else None
    )
    middlewares = []
    if d.http_users_file:
        auth = BasicAuth(load_users(d.http_users_file), frozenset(d.http_open_paths))
        middlewares.append(auth.middleware)
    try:
        runner = await start_server(
            holder, d.http_host, d.http_port, ssl_context=context, middlewares=middlewares
        )
    except OSError as exc:
        log.error(
            "event=http_bind_failed host=%s port=%d error=%r",
            d.http_host,
            d.http_port,
            exc.strerror,
        )
        raise
    log.info(
        "event=http_listening host=%s port=%d tls=%s auth=%s",
        d.http_host,
        d.http_port,
        context is not None,
        bool(middlewares),
    )
    return runner


async def _start_agent_check(
    settings: Settings, holder: Holder, log: logging.Logger
) -> AgentCheckServer | None:
    """HAProxy's agent-check responder (sipwatch/agent_check.py) beside the HTTP endpoint,
    or None when it is off; like the HTTP address, its address is read at start only. A bind
    failure is logged and re-raised (exit 6)."""
    from sipwatch.agent_check import AgentCheckServer, agent_line
    from sipwatch.cluster.rails import Rail

    d = settings.daemon
    if not d.agent_check_port:
        return None
    freeze_file = settings.cluster.freeze_file

    def answer() -> str:
        daemon = holder.daemon
        if daemon is None or daemon.waiting_for_first_results():
            return agent_line(None)
        # Frozen: the freeze file exists, or the agent's last hand-over was refused by the
        # freeze rail (the file, or the `sipwatch-freeze` node attribute in the CIB).
        frozen = freeze_file is not None and freeze_file.exists()
        if not frozen and daemon.agent is not None:
            records = daemon.agent.audit.records()
            frozen = bool(records) and records[-1].rail is Rail.FREEZE
        return agent_line(daemon.decision, results=daemon.last.values(), frozen=frozen)

    server = AgentCheckServer(answer)
    try:
        await server.start(d.agent_check_host, d.agent_check_port)
    except OSError as exc:
        log.error(
            "event=agent_check_bind_failed host=%s port=%d error=%r",
            d.agent_check_host,
            d.agent_check_port,
            exc.strerror,
        )
        raise
    log.info("event=agent_check_listening host=%s port=%d", d.agent_check_host, server.port)
    return server


async def _supervise(
    args: argparse.Namespace, settings: Settings, holder: Holder, log: logging.Logger
) -> int:
    """Run the daemon until SIGTERM/SIGINT; on SIGHUP swap in a daemon of the reloaded
    config (the old one stops first and hands over what it learnt), or keep the running
    one when the new config is bad."""
    import asyncio
    import signal

    from sipwatch.errors import ConfigError

    assert holder.daemon is not None
    loop = asyncio.get_running_loop()
    terminate = asyncio.Event()
    reload = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminate.set)
    loop.add_signal_handler(signal.SIGINT, terminate.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    stop = asyncio.Event()
    task = asyncio.create_task(holder.daemon.run(stop))
    while True:
        waiters = [asyncio.create_task(terminate.wait()), asyncio.create_task(reload.wait())]
        await asyncio.wait([task, *waiters], return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        if task.done():  # the daemon ended on its own: a bug; report and exit non-zero
            task.result()
            return 1
        if terminate.is_set():
            stop.set()
            await _bounded(task, settings.daemon.shutdown_timeout_s, log)
            if holder.daemon is not None:
                holder.daemon.ctx.memory.close()  # the kept connections
            log.info("event=exit code=0")
            return 0
        reload.clear()
        try:
            new_settings, new_policy, new_meta = _load(args)
            new_daemon = _make_daemon(new_settings, new_policy, new_meta, holder)
        except ConfigError as exc:
            log.error("event=reload_rejected keeping=old_config error=%r", str(exc))
            continue  # the running daemon goes on untouched
        stop.set()
        await _bounded(task, settings.daemon.shutdown_timeout_s, log)
        settings = new_settings
        new_daemon.adopt(holder.daemon)
        holder.daemon = new_daemon
        holder.ready_when_yellow = settings.daemon.ready_when_yellow
        log.warning("event=config_reloaded probes=%d", len(settings.probes))
        stop = asyncio.Event()
        task = asyncio.create_task(holder.daemon.run(stop))


async def _bounded(task: Any, timeout_s: float, log: Any) -> None:
    import asyncio

    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        log.error("event=shutdown_timeout seconds=%s", timeout_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
