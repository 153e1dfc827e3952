"""deploy/prometheus and deploy/grafana against the real tools and a real daemon: the alert
rules pass `promtool check rules` and their unit tests, and every metric the rules and the
dashboard query is one a running `sipwatch run` exports (with a TLS probe, a VIP probe and a
dry-run cluster agent, so that every family has samples); `promtool check metrics` lints the
live exposition (naming conventions)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_daemon import POLICY, get, running, wait_for

from testbed import free_port

pytestmark = pytest.mark.peers
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "sipwatch-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "sipwatch-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sipwatch-dashboard.json"
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
METRIC = re.compile(r"\bsipwatch_[a-z0-9_]+\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: `make setup` installs Debian's prometheus package")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=RULES.parent
    )


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rule tests are not vacuous: with the red alert's threshold broken, they fail."""
    broken = RULES.read_text().replace("sipwatch_verdict == 2", "sipwatch_verdict == 3")
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tool = shutil.which("promtool") or "promtool"
    tested = subprocess.run(
        [tool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert tested.returncode != 0 and "SipwatchNodeRed" in tested.stdout + tested.stderr


def queried_metrics() -> set[str]:
    names = set(METRIC.findall(RULES.read_text()))
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names.update(METRIC.findall(target["expr"]))
    return names


def test_every_queried_metric_is_exported_by_a_live_daemon(kam, tmp_path: Path) -> None:
    from testbed.pacemaker import FileCluster

    cluster = FileCluster.build(tmp_path / "cib.xml")
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\nverdict_file = ""\n'
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\nuri = "{kam.uri("udp")}"\n'
        "interval_s = 0.5\ntimeout_s = 0.4\n"
        f'[[probes]]\nname = "pbx-tls"\nkind = "sip_options"\nuri = "{kam.uri("tls")}"\n'
        f'tls_ca_file = "{kam.cert_file}"\ninterval_s = 0.5\ntimeout_s = 0.4\n'
        '[[probes]]\nname = "vip"\nkind = "vip"\naddress = "127.0.0.1"\ninterval_s = 0.5\n'
        'timeout_s = 0.4\n[cluster]\nagent = "health_attribute"\ndry_run = true\nnode = "n1"\n'
        f'cib_file = "{cluster.path}"\n'
    )
    log = tmp_path / "daemon.log"
    with running(cfg, log):
        try:
            wanted = queried_metrics()

            def exported() -> set[str] | None:
                try:
                    status, text = get(port, "/metrics")
                except OSError:
                    return None
                if status != 200:
                    return None
                names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
                return names if wanted <= names else None

            kam.set_fault("OPTIONS", code=500)  # green -> red: an action, and a verdict change
            try:
                names = wait_for(exported, timeout_s=20)
            except AssertionError:
                text = get(port, "/metrics")[1]
                live = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
                raise AssertionError(
                    f"queried but not exported: {sorted(wanted - live)}\n{log.read_text()[-2000:]}"
                ) from None
            assert "sipwatch_tls_cert_not_after_seconds" in names
            text = get(port, "/metrics")[1]
            assert re.search(r'sipwatch_vip_held\{address="127\.0\.0\.1",probe="vip"\} 1\.0', text)
            linted = subprocess.run(
                [shutil.which("promtool") or "promtool", "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert linted.returncode == 0, linted.stdout + linted.stderr
        finally:
            kam.clear_faults()
