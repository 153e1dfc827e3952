"""The status page's rendering: every value escaped, the parts an operator looks for."""

from __future__ import annotations

from sipwatch.status_page import render, sparkline


def status(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "verdict": "red",
        "score": 12,
        "eligible": True,
        "active": True,
        "policy": "default",
        "uptime_s": 75.0,
        "reasons": [
            {"probe": "pbx-udp", "effect": "red", "outcome": "timeout", "detail": "down: 3 <b>x"}
        ],
        "probes": {
            "pbx-udp": {
                "kind": "sip_options",
                "last": {"outcome": "timeout", "detail": "<script>alert(1)</script>"},
                "runs": 9,
                "failures": 3,
                "rtt_recent_ms": [1.0, 2.0, 1.5],
                "recent_failures": [{"outcome": "timeout", "detail": "no answer"}],
            },
            "vip": {
                "kind": "vip",
                "last": {"outcome": "ok", "extra": {"held": True, "address": "10.0.0.10"}},
                "runs": 9,
                "failures": 0,
            },
        },
        "actions": [
            {
                "at": "2026-12-02T13:00:00+00:00",
                "action": "publish_health",
                "result": "refused",
                "rail": "last_node",
                "summary": "set node attribute #health-sipwatch=red on n1",
                "detail": "g_pbx would stop",
                "dry_run": False,
            }
        ],
    }
    body.update(over)
    return body


def test_values_from_peers_are_escaped() -> None:
    page = render(status(), node="n1<")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "down: 3 &lt;b&gt;x" in page and "n1&lt;" in page


def test_the_page_says_verdict_role_vip_and_refusals() -> None:
    page = render(status(), node="n1")
    assert 'id="verdict"' in page and ">red</span>" in page
    assert '<b id="role">active</b>' in page
    assert "10.0.0.10 held here" in page
    assert "last_node" in page and "refused" in page
    assert 'id="no-cluster"' in page  # no agent: said, not hidden
    standby = render(status(active=False, actions=[]), node="n2")
    assert '<b id="role">standby</b>' in standby and 'id="no-actions"' in standby


def test_the_cluster_view_and_a_failing_crm_tool() -> None:
    cluster = {
        "ok": True,
        "resource": "g_pbx",
        "running_on": ["n2"],
        "have_quorum": True,
        "agent": "health_attribute",
        "nodes": [
            {"name": "n1", "online": True, "health": "red"},
            {"name": "n3", "online": False, "health": None},
        ],
    }
    page = render(status(), cluster, node="n1")
    assert "runs on <b>n2</b>" in page and "OFFLINE" in page and "<td>red</td>" in page
    failed = render(status(), {"ok": False, "error": "cibadmin: timed out"}, node="n1")
    assert 'id="cluster-error"' in failed and "cibadmin: timed out" in failed


def test_sparkline() -> None:
    assert sparkline([1.0]) == ""
    svg = sparkline([1.0, 4.0, 2.0])
    points = svg.split('points="')[1].split('"')[0].split()
    assert svg.startswith("<svg") and len(points) == 3 and "max 4.0 ms" in svg
    # newest at the right, the highest RTT at the top
    assert float(points[-1].split(",")[0]) > float(points[0].split(",")[0])
    assert float(points[1].split(",")[1]) < float(points[0].split(",")[1])
