"""`GET /`: the status page an operator opens at 3 a.m. Server-rendered HTML from the same
data as `/status` (plus the cluster view when the crm tools answer), no external assets, no
JavaScript (a meta refresh reloads it every REFRESH_S seconds).

Owns: rendering only. Every value from the daemon, the probes or the cluster is escaped; the
page never holds a secret because `/status` never does.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

REFRESH_S = 5
_COLOUR = {"green": "#1a7f37", "yellow": "#9a6700", "red": "#cf222e"}
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d0d7de;
padding:.3em .5em;text-align:left;vertical-align:top}th{background:#f6f8fa}
.verdict{display:inline-block;padding:.2em .7em;border-radius:.3em;color:#fff;font-weight:600}
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#656d76}code{font-size:.95em}
svg.spark{vertical-align:middle}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def sparkline(values: Sequence[float], width: int = 120, height: int = 24) -> str:
    """An inline SVG polyline of RTTs (ms), newest at the right; "" with fewer than 2."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" role="img" '
        f'aria-label="RTT, last {len(values)} runs, max {top:.1f} ms">'
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{points}"/></svg>'
    )


def _since(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _role(status: Mapping[str, Any]) -> tuple[str, str]:
    """(this node's role, who holds the VIP) as the page says them."""
    role = "active" if status.get("active") else "standby"
    vip = "unknown (no vip probe)"
    for probe in status.get("probes", {}).values():
        last = probe.get("last") or {}
        if probe.get("kind") == "vip" and isinstance(last.get("extra"), dict):
            held = last["extra"].get("held")
            address = last["extra"].get("address", "")
            vip = f"{address} held here" if held else f"{address} not held here"
    return role, vip


def _grace(grace: object) -> str:
    if not isinstance(grace, dict):
        return ""
    return (
        f'; <b id="grace">{_e(grace.get("grace"))} grace</b>, {_e(grace.get("left_s"))} s left '
        "(failures are yellow until then)"
    )


def _reasons(reasons: Iterable[Mapping[str, Any]]) -> str:
    rows = [
        f"<tr><td>{_e(r.get('probe') or 'score')}</td><td>{_e(r.get('effect'))}</td>"
        f"<td>{_e(r.get('outcome'))}</td><td>{_e(r.get('detail'))}</td></tr>"
        for r in reasons
    ]
    if not rows:
        return '<p class="ok" id="no-reasons">nothing wrong</p>'
    return (
        '<table id="reasons"><tr><th>probe</th><th>effect</th><th>outcome</th><th>why</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _probes(probes: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, p in probes.items():
        last = p.get("last") or {}
        outcome = last.get("outcome", "no result yet")
        css = "ok" if outcome == "ok" else "bad"
        rtt = last.get("rtt_ms")
        rows.append(
            f'<tr data-probe="{_e(name)}"><td><a href="/probes/{_e(quote(name, safe=""))}/trace"'
            f' title="the last run\'s SIP messages">{_e(name)}</a></td><td>{_e(p.get("kind"))}</td>'
            f'<td class="{css}">{_e(outcome)}</td>'
            f"<td>{_e(last.get('status_code') or '')}</td>"
            f"<td>{_e(f'{rtt:.1f} ms' if isinstance(rtt, int | float) else '')}</td>"
            f"<td>{sparkline(p.get('rtt_recent_ms') or [])}</td>"
            f"<td>{_e(p.get('runs'))} / {_e(p.get('failures'))}</td>"
            f"<td>{_e(last.get('detail'))}</td></tr>"
        )
    return (
        '<table id="probes"><tr><th>probe</th><th>kind</th><th>last</th><th>status</th>'
        "<th>RTT</th><th>recent RTT</th><th>runs / failures</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _failures(probes: Mapping[str, Mapping[str, Any]], limit: int = 15) -> str:
    rows = [
        f"<tr><td>{_e(name)}</td><td>{_e(f.get('outcome'))}</td>"
        f"<td>{_e(f.get('status_code') or '')}</td><td>{_e(f.get('detail'))}</td></tr>"
        for name, p in probes.items()
        for f in (p.get("recent_failures") or [])[-limit:]
    ]
    if not rows:
        return '<p class="muted" id="no-failures">no failures kept</p>'
    return (
        '<table id="failures"><tr><th>probe</th><th>outcome</th><th>status</th><th>detail</th>'
        "</tr>" + "".join(rows[-limit:]) + "</table>"
    )


def _actions(actions: Sequence[Mapping[str, Any]], limit: int = 15) -> str:
    if not actions:
        return '<p class="muted" id="no-actions">no cluster action yet</p>'
    rows = [
        f"<tr><td>{_e(str(a.get('at') or '')[:19].replace('T', ' '))}</td>"
        f"<td>{_e(a.get('action'))}</td>"
        f"<td>{_e(a.get('result'))}{' (dry run)' if a.get('dry_run') else ''}</td>"
        f"<td>{_e(a.get('rail') or '')}</td><td>{_e(a.get('summary'))}</td>"
        f"<td>{_e(a.get('detail'))}</td></tr>"
        for a in reversed(actions[-limit:])
    ]
    return (
        '<table id="actions"><tr><th>at (UTC)</th><th>action</th><th>result</th><th>rail</th>'
        "<th>change</th><th>detail</th></tr>" + "".join(rows) + "</table>"
    )


def _cluster(cluster: Mapping[str, Any] | None) -> str:
    if cluster is None:
        return '<p class="muted" id="no-cluster">no cluster agent configured</p>'
    if not cluster.get("ok"):
        return f'<p class="bad" id="cluster-error">crm tools: {_e(cluster.get("error"))}</p>'
    running = ", ".join(cluster.get("running_on") or []) or "nowhere"
    head = (
        f'<p id="cluster-summary">{_e(cluster.get("resource"))} runs on <b>{_e(running)}</b>; '
        f"quorum: {_e(cluster.get('have_quorum'))}; frozen: {_e(cluster.get('frozen') or 'no')}"
        f"; agent: {_e(cluster.get('agent'))}</p>"
    )
    rows = [
        f"<tr><td>{_e(n.get('name'))}</td><td>{'online' if n.get('online') else 'OFFLINE'}</td>"
        f"<td>{_e(n.get('health') or '')}</td>"
        f"<td>{'standby' if n.get('standby') else ''}"
        f"{' maintenance' if n.get('maintenance') else ''}</td></tr>"
        for n in cluster.get("nodes") or []
    ]
    return (
        head + '<table id="nodes"><tr><th>node</th><th>state</th><th>#health-sipwatch</th><th></th>'
        "</tr>" + "".join(rows) + "</table>"
    )


def render(
    status: Mapping[str, Any],
    cluster: Mapping[str, Any] | None = None,
    *,
    node: str = "",
    now: float | None = None,
) -> str:
    """The page for one `/status` body (and the cluster agent's status, when there is one)."""
    now = time.time() if now is None else now
    verdict = str(status.get("verdict") or "starting")
    colour = _COLOUR.get(verdict, "#656d76")
    role, vip = _role(status)
    probes = status.get("probes") or {}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>sipwatch {_e(node)}: {_e(verdict)}</title><style>{_CSS}</style></head><body>"
        f'<h1>sipwatch {_e(node)} <span class="verdict" id="verdict" '
        f'style="background:{colour}">{_e(verdict)}</span></h1>'
        f'<p id="summary">score <b>{_e(status.get("score"))}</b>; this node is '
        f'<b id="role">{_e(role)}</b>; VIP: <span id="vip">{_e(vip)}</span>; eligible to take '
        f"over: {_e(status.get('eligible'))}; policy {_e(status.get('policy'))}; up "
        f"{_e(_since(status.get('uptime_s')))}{_grace(status.get('grace'))}</p>"
        f"<h2>Why</h2>{_reasons(status.get('reasons') or [])}"
        f"<h2>Probes</h2>{_probes(probes)}"
        f"<h2>Recent failures</h2>{_failures(probes)}"
        f"<h2>Cluster actions</h2>{_actions(status.get('actions') or [])}"
        f"<h2>Cluster</h2>{_cluster(cluster)}"
        f'<p class="muted">{_e(stamp)}; reloads every {REFRESH_S} s; JSON: '
        '<a href="/status">/status</a>, <a href="/metrics">/metrics</a></p></body></html>'
    )
