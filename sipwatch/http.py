"""HTTP endpoints of the daemon (aiohttp), read-only: nothing here changes state.

    GET /         the status page (HTML, sipwatch/status_page.py)
    GET /livez    200 while sipwatch itself runs
    GET /readyz   200 when this node's verdict is green (yellow too if configured), else 503
    GET /active   200 only when ready AND this node holds the VIP/PBX role (HAProxy httpchk)
    GET /status   JSON: verdict, score, reasons, each probe's last result, latency, history,
                  actions taken or refused
    GET /check?format=text|json|shell  what `sipwatch check --format FMT` prints with this
                  daemon answering, rendered by check's own code; the exit code and the
                  config's sha256 in X-Sipwatch-Exit-Code and X-Sipwatch-Config-Sha256
                  (sipwatch.check_fast, the monitors' fast path); 503 while starting
    GET /probes/NAME/trace  the probe's last run: every SIP message, in order (text, masked)
    GET /metrics  Prometheus exposition (prometheus-client, a registry of our own)

Owns: the aiohttp application and the metrics. Must not know: probing or policy logic; it
reads the daemon through `Holder` (the daemon is replaced on SIGHUP reload). Slow or
malformed clients are aiohttp's business (bounded request size, keep-alive timeout); probing
runs in its own tasks and never waits on a client.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sipwatch.model import Decision, ProbeResult, Verdict

if TYPE_CHECKING:
    from sipwatch.cluster.audit import AuditRecord
    from sipwatch.daemon import Daemon

_VERDICT_VALUE = {Verdict.GREEN: 0, Verdict.YELLOW: 1, Verdict.RED: 2}


class Metrics:
    """The Prometheus metrics, in a registry owned by this object (no global state). A
    `DaemonObserver` (sipwatch.daemon): the daemon calls it on results, decisions, actions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("probe", "kind")
        self.success = Gauge(
            "sipwatch_probe_success", "1 if the last run was ok", labels, registry=self.registry
        )
        self.duration = Histogram(
            "sipwatch_probe_duration_seconds",
            "Probe round-trip time (final response)",
            labels,
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self.outcomes = Counter(
            "sipwatch_probe_outcomes",
            "Probe runs by outcome",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.verdict = Gauge("sipwatch_verdict", "0 green, 1 yellow, 2 red", registry=self.registry)
        self.score = Gauge("sipwatch_score", "Health score 0-100", registry=self.registry)
        self.eligible = Gauge(
            "sipwatch_eligible", "1 if this node may run the PBX", registry=self.registry
        )
        self.actions = Counter(
            "sipwatch_actions",
            "Cluster actions by kind and result",
            ("action", "result"),
            registry=self.registry,
        )
        self.active = Gauge(
            "sipwatch_active",
            "1 if this node is the active one (the policy's active_when: VIP or PBX here)",
            registry=self.registry,
        )
        self.vip_held = Gauge(
            "sipwatch_vip_held",
            "1 if this node holds the VIP (per vip probe; sum over the fleet should be 1)",
            ("probe", "address"),
            registry=self.registry,
        )
        self.verdict_changed = Gauge(
            "sipwatch_verdict_last_change_timestamp_seconds",
            "Unix time of the last verdict change (0: unchanged since start)",
            registry=self.registry,
        )
        self.cert_not_after = Gauge(
            "sipwatch_tls_cert_not_after_seconds",
            "Unix time at which the peer certificate seen by a TLS/WSS probe expires",
            ("probe", "kind"),
            registry=self.registry,
        )
        # Read at each scrape, not kept up to date: a leak of tasks (one per probe run, per
        # client, per reload) shows as this growing over a long run (bench/soak.py).
        self.tasks = Gauge(
            "sipwatch_asyncio_tasks",
            "asyncio tasks alive in the daemon's event loop (the scrape's own included)",
            registry=self.registry,
        )
        self._verdict: Verdict | None = None

    def on_result(self, result: ProbeResult, now: float) -> None:
        self.success.labels(result.probe, result.kind).set(1 if result.alive else 0)
        self.outcomes.labels(result.probe, result.kind, str(result.outcome)).inc()
        if result.rtt_ms is not None:
            self.duration.labels(result.probe, result.kind).observe(result.rtt_ms / 1000)
        if result.kind == "vip" and isinstance(result.extra.get("held"), bool):
            address = str(result.extra.get("address", result.target))
            self.vip_held.labels(result.probe, address).set(1 if result.extra["held"] else 0)
        if result.tls_not_after:
            expires = _cert_time(result.tls_not_after)
            if expires is not None:
                self.cert_not_after.labels(result.probe, result.kind).set(expires)

    def on_decision(self, decision: Decision) -> None:
        if self._verdict is not None and decision.verdict is not self._verdict:
            self.verdict_changed.set(time.time())
        self._verdict = decision.verdict
        self.verdict.set(_VERDICT_VALUE[decision.verdict])
        self.score.set(decision.score)
        self.eligible.set(1 if decision.eligible else 0)
        self.active.set(1 if decision.active else 0)

    def on_action(self, record: AuditRecord) -> None:
        self.actions.labels(record.action, str(record.result)).inc()


def _cert_time(not_after: str) -> float | None:
    """A certificate's notAfter (as Python's ssl module prints it, or ISO 8601) in Unix
    seconds; None when it is neither."""
    import ssl
    from datetime import datetime

    try:
        return float(ssl.cert_time_to_seconds(not_after))
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(not_after).timestamp()
    except ValueError:
        return None


@dataclass(slots=True)
class Holder:
    """What the endpoints read. The daemon inside is swapped on reload."""

    daemon: Daemon | None = None
    metrics: Metrics = field(default_factory=Metrics)
    ready_when_yellow: bool = False
    # The cluster agent's view for the status page: (monotonic time read, status dict).
    cluster_view: tuple[float, dict[str, Any] | None] | None = None


HOLDER = web.AppKey("holder", Holder)


def _ready(holder: Holder) -> tuple[bool, str]:
    daemon = holder.daemon
    if daemon is None:
        return False, "starting"
    waiting = daemon.waiting_for_first_results()
    if waiting:
        # Never "ready" on a node no probe has looked at yet: a load balancer would send
        # calls to a PBX nobody has verified.
        return False, f"starting: no result yet from {', '.join(waiting)}"
    d = daemon.decision
    ok = d.verdict is Verdict.GREEN or (d.verdict is Verdict.YELLOW and holder.ready_when_yellow)
    why = "; ".join(r.detail or f"{r.probe} {r.outcome}" for r in d.reasons[:3])
    return ok, f"{d.verdict} score={d.score}" + (f": {why}" if why else "")


async def livez(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ok, text = _ready(request.app[HOLDER])
    return web.Response(text=text + "\n", status=200 if ok else 503)


async def active(request: web.Request) -> web.Response:
    holder = request.app[HOLDER]
    ok, text = _ready(holder)
    is_active = holder.daemon is not None and holder.daemon.decision.active
    if ok and not is_active:
        return web.Response(text="healthy but not the active node\n", status=503)
    return web.Response(text=text + "\n", status=200 if ok else 503)


async def check(request: web.Request) -> web.Response:
    from sipwatch.check_fast import FORMATS
    from sipwatch.commands.check import daemon_answer

    daemon = request.app[HOLDER].daemon
    fmt = request.query.get("format", "text")
    if fmt not in FORMATS:
        return web.Response(status=400, text=f"format: want one of {', '.join(FORMATS)}\n")
    if daemon is None or daemon.waiting_for_first_results():
        # check then probes by itself, as it does when /status says the same
        return web.Response(status=503, text="starting\n")
    results = tuple(daemon.last[s.name] for s in daemon.specs)
    code, text = daemon_answer(daemon.decision, results, daemon.policy_name, fmt)
    headers = {
        "X-Sipwatch-Exit-Code": str(code),
        "X-Sipwatch-Config-Sha256": str(daemon.meta.get("config_sha256", "")),
    }
    return web.Response(text=text + "\n", headers=headers)


async def status(request: web.Request) -> web.Response:
    daemon = request.app[HOLDER].daemon
    body: dict[str, Any] = (
        daemon.status() if daemon else {"verdict": None, "source": "daemon", "detail": "starting"}
    )
    return web.Response(text=json.dumps(body, default=str), content_type="application/json")


#: The status page reads the cluster through the agent's crm tools at most this often, off
#: the event loop and bounded: a page reload never runs more tools than this.
CLUSTER_VIEW_S = 5.0
CLUSTER_VIEW_TIMEOUT_S = 5.0


async def _cluster_view(holder: Holder) -> dict[str, Any] | None:
    import asyncio

    daemon = holder.daemon
    if daemon is None or daemon.agent is None:
        return None
    now = time.monotonic()
    if holder.cluster_view is not None and now - holder.cluster_view[0] < CLUSTER_VIEW_S:
        return holder.cluster_view[1]
    holder.cluster_view = (now, {"ok": False, "error": "being read"})  # one reader at a time
    try:
        view = await asyncio.wait_for(
            asyncio.to_thread(daemon.agent.status), CLUSTER_VIEW_TIMEOUT_S
        )
        body: dict[str, Any] = view.to_dict()
    except TimeoutError:
        body = {"ok": False, "error": f"no answer within {CLUSTER_VIEW_TIMEOUT_S:g} s"}
    except Exception as exc:  # the agent's contract is "never raises"; a bug stays a line
        body = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
    holder.cluster_view = (time.monotonic(), body)
    return body


async def page(request: web.Request) -> web.Response:
    from sipwatch.status_page import render

    holder = request.app[HOLDER]
    daemon = holder.daemon
    if daemon is None:
        body = render({"verdict": None})
    else:
        node = daemon.agent.node if daemon.agent is not None else _hostname()
        body = render(daemon.status(), await _cluster_view(holder), node=node)
    return web.Response(text=body, content_type="text/html", charset="utf-8")


async def probe_trace(request: web.Request) -> web.Response:
    daemon = request.app[HOLDER].daemon
    name = request.match_info["name"]
    if daemon is None or name not in {s.name for s in daemon.specs}:
        return web.Response(status=404, text=f"no probe named {name!r}\n")
    trace = daemon.traces.get(name)
    if trace is None:
        return web.Response(status=404, text=f"probe {name!r} has not run yet\n")
    return web.Response(text=trace.render())


def _hostname() -> str:
    import socket

    return socket.gethostname()


async def metrics(request: web.Request) -> web.Response:
    import asyncio

    holder = request.app[HOLDER]
    if holder.daemon is not None:
        holder.metrics.on_decision(holder.daemon.decision)
    holder.metrics.tasks.set(len(asyncio.all_tasks()))
    return web.Response(
        body=generate_latest(holder.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def make_app(holder: Holder, middlewares: Sequence[Any] = ()) -> web.Application:
    # Requests are GETs with no body: 8 KiB is plenty, and bounds a hostile client.
    app = web.Application(client_max_size=8192, middlewares=list(middlewares))
    app[HOLDER] = holder
    app.router.add_get("/", page)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/active", active)
    app.router.add_get("/status", status)
    app.router.add_get("/check", check)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probes/{name}/trace", probe_trace)
    return app


async def start_server(
    holder: Holder,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    middlewares: Sequence[Any] = (),
) -> web.AppRunner:
    runner = web.AppRunner(
        make_app(holder, middlewares), access_log=None, keepalive_timeout=15, shutdown_timeout=2
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=64, ssl_context=ssl_context).start()
    return runner
