"""Pacemaker tools that fail, hang or print garbage, at the declared seam (`bin_dir`).

A wrapper script in `bin_dir` stands in for one tool; every other tool is the real one,
working on a file CIB. Each test checks the contract: the action is reported failed (an
audit record says which tool and how), nothing is left half-done (what a hung tool applied
is undone), the time spent is bounded, and the next call works again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from sipwatch.cluster import (
    ActionOutcome,
    BanAgent,
    HealthAttributeAgent,
    Mode,
    PacemakerTools,
    RailConfig,
    ToolPolicy,
)
from sipwatch.model import Verdict
from testbed.pacemaker import FileCluster

#: CIB_file never names a live cluster (tests/functional/conftest.py: never_live).
pytestmark = pytest.mark.usefixtures("never_live")
HEALTH = "#health-sipwatch"
FAST = ToolPolicy(timeout_s=0.5, attempts=2, total_s=1.5, backoff_s=0.05)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


def wrap(bin_dir: Path, tool: str, body: str) -> Path:
    """A wrapper for `tool`: $REAL is the real one, $@ the arguments."""
    real = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    assert real, f"{tool} is not installed"
    script = bin_dir / tool
    script.write_text(f'#!/bin/sh\nREAL="{real}"\n{body}\n')
    script.chmod(0o755)
    return script


def agent(cluster: FileCluster, bin_dir: Path, cls: type = BanAgent, **kwargs: object) -> BanAgent:
    tools = PacemakerTools(cib_file=cluster.path, bin_dir=bin_dir, policy=FAST)
    return cls(tools, node="n1", resource="g_pbx", rails=RailConfig(freeze_file=None), **kwargs)  # type: ignore[no-any-return]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_failing_tool(cluster: FileCluster, bin_dir: Path) -> None:
    # Fails on the cluster only: the rails' dry run of the ban on the private copy works.
    wrap(bin_dir, "crm_resource", f"""
if [ "$CIB_file" = "{cluster.path}" ]; then
    case "$*" in *--ban*) echo "crm_resource: simulated failure" >&2; exit 1;; esac
fi
exec "$REAL" "$@"
""")  # fmt: skip
    ban = agent(cluster, bin_dir)
    record = ban.move_away("sip down")
    assert record.result is ActionOutcome.FAILED
    assert record.detail == "crm_resource: exit 1: crm_resource: simulated failure; undone"
    assert ban.audit.records() == (record,)
    assert cluster.constraints() == {}

    (bin_dir / "crm_resource").unlink()  # the tool works again: so does the agent
    assert ban.move_away("sip down").result is ActionOutcome.DONE
    assert list(cluster.constraints()) == ["cli-ban-g_pbx-on-n1"]


def test_tool_that_applies_then_hangs_is_undone(
    cluster: FileCluster, bin_dir: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    wrap(bin_dir, "crm_resource", f"""
if [ "$CIB_file" = "{cluster.path}" ]; then
    case "$*" in
    *--ban*) "$REAL" "$@" >/dev/null 2>&1; sleep 30 & echo $! >> "{pids}"; wait; exit 0;;
    esac
fi
exec "$REAL" "$@"
""")  # fmt: skip
    ban = agent(cluster, bin_dir)
    started = time.monotonic()
    record = ban.move_away("sip down")
    elapsed = time.monotonic() - started

    assert record.result is ActionOutcome.FAILED
    assert record.detail.startswith("crm_resource: timed out after 0.")
    assert "(2 attempts)" in record.detail  # a timeout is transient: retried once
    assert record.detail.endswith("; undone")
    assert cluster.constraints() == {}  # the ban the hung tool made is gone again
    assert elapsed < FAST.total_s + 3.0
    sleepers = [int(p) for p in pids.read_text().split()]
    assert len(sleepers) == 2
    assert not any(alive(p) for p in sleepers)  # the whole process group was killed


def test_garbage_from_cibadmin(cluster: FileCluster, bin_dir: Path) -> None:
    wrap(bin_dir, "cibadmin", 'echo "<cib this is not xml"; exit 0')
    before = digest(cluster.path)
    health = agent(cluster, bin_dir, HealthAttributeAgent)
    record = health.publish_health(Verdict.RED)
    assert (record.result, record.detail) == (
        ActionOutcome.FAILED,
        "cibadmin: output is not XML",
    )
    assert digest(cluster.path) == before
    status = health.status()
    assert (status.ok, status.error) == (False, "cibadmin: output is not XML")


def test_garbage_from_crm_simulate(cluster: FileCluster, bin_dir: Path) -> None:
    wrap(
        bin_dir, "crm_simulate", "echo '<pacemaker-result><status code=\"0\"/></pacemaker-result>'"
    )
    before = digest(cluster.path)
    record = agent(cluster, bin_dir).move_away("sip down")
    assert (record.result, record.detail) == (
        ActionOutcome.FAILED,
        "crm_simulate: no <cluster_status> in its output",
    )
    assert digest(cluster.path) == before


def test_hanging_cibadmin_is_bounded(cluster: FileCluster, bin_dir: Path) -> None:
    wrap(bin_dir, "cibadmin", "sleep 30")
    health = agent(cluster, bin_dir, HealthAttributeAgent)
    started = time.monotonic()
    record = health.publish_health(Verdict.RED)
    assert time.monotonic() - started < FAST.total_s + 3.0
    assert record.result is ActionOutcome.FAILED
    assert record.detail.startswith("cibadmin: timed out after")
    assert health.audit.records()[-1] is record
    assert not health.status().ok


def test_attribute_write_that_hangs_on_the_cluster_is_undone(
    cluster: FileCluster, bin_dir: Path
) -> None:
    # Only the real CIB hangs: the rails' simulation on the private copy works.
    wrap(bin_dir, "crm_attribute", f"""
if [ "$CIB_file" = "{cluster.path}" ]; then
    case "$*" in *--update*) "$REAL" "$@" >/dev/null 2>&1; sleep 30;; esac
fi
exec "$REAL" "$@"
""")  # fmt: skip
    record = agent(cluster, bin_dir, HealthAttributeAgent).publish_health(Verdict.RED)
    assert record.result is ActionOutcome.FAILED
    assert record.detail.startswith("crm_attribute: timed out")
    assert record.detail.endswith("; undone")
    assert cluster.node_attribute("n1", HEALTH) is None  # back to what it was


def test_transient_failure_is_retried(cluster: FileCluster, bin_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    wrap(bin_dir, "crm_attribute", f"""
if [ "$CIB_file" = "{cluster.path}" ]; then
    case "$*" in *--update*)
        echo x >> "{calls}"
        if [ "$(wc -l < "{calls}")" -eq 1 ]; then echo "try again" >&2; exit 75; fi;;
    esac
fi
exec "$REAL" "$@"
""")  # fmt: skip
    record = agent(cluster, bin_dir, HealthAttributeAgent).publish_health(Verdict.RED)
    assert record.result is ActionOutcome.DONE
    assert calls.read_text().count("x") == 2
    assert cluster.node_attribute("n1", HEALTH) == "red"


def test_write_that_does_not_take_effect_fails(cluster: FileCluster, bin_dir: Path) -> None:
    # The tool says "ok" but changes nothing: the read-back catches it.
    wrap(bin_dir, "crm_attribute", f"""
if [ "$CIB_file" = "{cluster.path}" ]; then
    case "$*" in *--update*) exit 0;; esac
fi
exec "$REAL" "$@"
""")  # fmt: skip
    record = agent(cluster, bin_dir, HealthAttributeAgent).publish_health(Verdict.RED)
    assert record.result is ActionOutcome.FAILED
    assert record.detail.startswith(
        f"set node attribute {HEALTH}=red on n1: not in effect when read back"
    )
    assert cluster.node_attribute("n1", HEALTH) is None


def test_retries_are_bounded_in_total_time(bin_dir: Path) -> None:
    wrap(bin_dir, "cibadmin", "sleep 30")
    policy = ToolPolicy(timeout_s=0.3, attempts=10, total_s=1.0, backoff_s=0.01)
    tools = PacemakerTools(cib_file="/nonexistent.xml", bin_dir=bin_dir, policy=policy)
    started = time.monotonic()
    result = tools.run("cibadmin", ["--query"])
    assert time.monotonic() - started < 2.5
    assert result.timed_out and result.rc is None and not result.ok
    assert 2 <= result.attempts <= 4


def test_live_mode_uses_attrd(cluster: FileCluster, bin_dir: Path, tmp_path: Path) -> None:
    """Live mode (no CIB_file): the health attribute goes through attrd_updater and is read
    back from it. There is no cluster here, so the "live" cluster is the file: the CIB tools
    are pinned to it, and a fake attrd_updater keeps attrd's values and writes them to the
    status section as pacemaker-attrd would."""
    log = tmp_path / "attrd.log"
    crm_attribute = shutil.which("crm_attribute") or "/usr/sbin/crm_attribute"
    fake = bin_dir / "attrd_updater"
    fake.write_text(f"""#!/bin/sh
echo "$*" >> "{log}"
name=""; node=""; op=""; value=""
while [ $# -gt 0 ]; do
    case "$1" in
    --name) name="$2"; shift;;
    --node) node="$2"; shift;;
    --update) op=update; value="$2"; shift;;
    --delete) op=delete;;
    --query) op=query;;
    esac
    shift
done
export CIB_file="{cluster.path}"
case "$op" in
update) exec "{crm_attribute}" --node "$node" --name "$name" --lifetime reboot --update "$value";;
delete) exec "{crm_attribute}" --node "$node" --name "$name" --lifetime reboot --delete;;
query)
    v=$("{crm_attribute}" --node "$node" --name "$name" --lifetime reboot --query --quiet)
    printf '<pacemaker-result api-version="2.25">'
    printf '<attribute name="%s" value="%s" host="%s"/>' "$name" "$v" "$node"
    printf '<status code="0" message="OK"/></pacemaker-result>\\n';;
esac
""")  # fmt: skip
    fake.chmod(0o755)
    tools = _live_tools(cluster, bin_dir)
    health = HealthAttributeAgent(
        tools, node="n1", resource="g_pbx", rails=RailConfig(freeze_file=None)
    )
    record = health.publish_health(Verdict.RED)
    assert record.result is ActionOutcome.DONE and record.failover
    assert cluster.node_attribute("n1", HEALTH) == "red"
    # "Already as asked?" is judged where the value is written and read back: attrd.
    assert log.read_text().splitlines() == [
        f"--query --name {HEALTH} --node n1 --output-as=xml",
        f"--name {HEALTH} --node n1 --update red",
        f"--query --name {HEALTH} --node n1 --output-as=xml",
    ]
    assert health.clear().result is ActionOutcome.DONE
    assert log.read_text().splitlines()[-2] == f"--name {HEALTH} --node n1 --delete"
    assert cluster.node_attribute("n1", HEALTH) is None


def _attrd_with_its_own_memory(bin_dir: Path, store: Path, *, lag_s: float = 0.0) -> None:
    """A fake attrd_updater whose values live apart from the CIB (pacemaker-attrd's memory):
    it never writes to the status section, so the two can disagree as they did on a node
    that rejoined (CIB: green, attrd: nothing). Like attrd, an update is taken at once and
    lands `lag_s` later (attrd applies it when its peer message comes back); a query of an
    attribute it never held exits 78, as Pacemaker 2.1.5's attrd_updater does."""
    fake = bin_dir / "attrd_updater"
    fake.write_text(f"""#!/bin/sh
name=""; node=""; op=""; value=""
while [ $# -gt 0 ]; do
    case "$1" in
    --name) name="$2"; shift;;
    --node) node="$2"; shift;;
    --update) op=update; value="$2"; shift;;
    --delete) op=delete;;
    --query) op=query;;
    esac
    shift
done
case "$op" in
update) (sleep {lag_s}; printf '%s' "$value" > "{store}") >/dev/null 2>&1 &;;
delete) : > "{store}";;
query)
    if [ ! -e "{store}" ]; then  # never held: what Pacemaker 2.1.5's attrd_updater does
        echo "attrd_updater: Could not query value of $name: attribute does not exist" >&2
        exit 78
    fi
    v=$(cat "{store}")
    printf '<pacemaker-result api-version="2.25">'
    printf '<attribute name="%s" value="%s" host="%s"/>' "$name" "$v" "$node"
    printf '<status code="0" message="OK"/></pacemaker-result>\\n';;
esac
""")  # fmt: skip
    fake.chmod(0o755)


def _live_tools(cluster: FileCluster, bin_dir: Path) -> PacemakerTools:
    for tool in ("cibadmin", "crm_simulate", "crm_attribute", "crm_resource"):
        wrap(
            bin_dir,
            tool,
            f'[ -n "$CIB_file" ] || export CIB_file="{cluster.path}"\nexec "$REAL" "$@"',
        )
    env = {k: v for k, v in os.environ.items() if k != "CIB_file"}
    tools = PacemakerTools(bin_dir=bin_dir, policy=FAST, env=env)
    assert tools.mode is Mode.LIVE
    return tools


def test_attribute_lost_in_attrd_but_kept_in_the_cib_is_republished(
    cluster: FileCluster, bin_dir: Path, tmp_path: Path
) -> None:
    """Issue 10: the CIB's status section said green, attrd said nothing; the planner judged
    "unchanged" from the CIB, so the re-assertion never repaired it. Judged from attrd (where
    it is written and read back), the same call writes it."""
    store = tmp_path / "attrd-value"
    _attrd_with_its_own_memory(bin_dir, store)
    tools = _live_tools(cluster, bin_dir)
    cluster.set_node_attribute("n1", HEALTH, "green")  # the CIB keeps what attrd forgot
    health = HealthAttributeAgent(
        tools, node="n1", resource="g_pbx", rails=RailConfig(freeze_file=None)
    )
    record = health.publish_health(Verdict.GREEN)
    assert record.result is ActionOutcome.DONE, record
    assert store.read_text() == "green"
    # And once attrd holds it, the next re-assertion changes nothing.
    assert health.publish_health(Verdict.GREEN).result is ActionOutcome.UNCHANGED
    assert health.status().health == "green"


def test_node_still_joining_waits_quietly_then_publishes(
    cluster: FileCluster, bin_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node whose cluster stack is still joining (no node_state in the CIB yet) is not an
    error: "waiting", logged once however often it is retried, then the publication goes
    through once the node has joined; past the bound it is a failure."""
    store = tmp_path / "attrd-value"
    _attrd_with_its_own_memory(bin_dir, store)
    tools = _live_tools(cluster, bin_dir)
    cluster.nodes_down("n2")
    now = [1000.0]
    health = HealthAttributeAgent(
        tools,
        node="n2",
        resource="g_pbx",
        rails=RailConfig(freeze_file=None),
        clock=lambda: now[0],
        join_wait_s=60.0,
    )
    with caplog.at_level("INFO", logger="sipwatch.cluster"):
        for _ in range(3):
            record = health.publish_health(Verdict.YELLOW)
            assert record.result is ActionOutcome.WAITING, record
            assert not record.ok and "n2 has not joined the cluster yet" in record.detail
            now[0] += 5
        assert [r.message for r in caplog.records].count(
            next(r.message for r in caplog.records if "event=cluster_waiting" in r.message)
        ) == 1
        assert len([r for r in health.audit.records() if r.result == "waiting"]) == 1
        assert not store.exists()  # nothing was written while waiting
        cluster.nodes_up("n2")
        record = health.publish_health(Verdict.GREEN)
        assert record.result is ActionOutcome.DONE, record
        assert store.read_text() == "green"
        assert any("event=cluster_joined node=n2" in r.message for r in caplog.records)
    # A node that never joins: past the bound it is reported as a failure.
    cluster.nodes_down("n2")
    health.publish_health(Verdict.GREEN)
    now[0] += 61
    record = health.publish_health(Verdict.YELLOW)
    assert record.result is ActionOutcome.FAILED
    assert "has not joined the cluster yet, for 61 s" in record.detail


def test_first_publication_on_a_fresh_attrd_is_read_back(
    cluster: FileCluster, bin_dir: Path, tmp_path: Path
) -> None:
    """Issue 10: a node that just booted has an attrd that never held the attribute. The
    update is accepted and lands a moment later; a read-back in between gets exit 78
    ("attribute does not exist"). That is "not there yet", to be looked at again, not a failed
    publication to undo (which left the node with no health attribute at all)."""
    store = tmp_path / "attrd-value"
    _attrd_with_its_own_memory(bin_dir, store, lag_s=0.3)
    tools = _live_tools(cluster, bin_dir)
    health = HealthAttributeAgent(
        tools, node="n2", resource="g_pbx", rails=RailConfig(freeze_file=None)
    )
    record = health.publish_health(Verdict.GREEN)
    assert record.result is ActionOutcome.DONE, record
    assert store.read_text() == "green"


def test_cib_changing_between_read_and_write_is_caught_and_undone(
    cluster: FileCluster, bin_dir: Path
) -> None:
    """The rails judge the snapshot; the two other nodes go into standby in the instant
    between it and the ban (an operator, another agent). Banning n1 then stops the group
    everywhere: the read-back after the write must see it and undo the ban (issue 17 §3)."""
    crm_attribute = shutil.which("crm_attribute") or shutil.which(
        "crm_attribute", path="/usr/sbin:/sbin"
    )
    wrap(bin_dir, "crm_resource", f"""
if [ "$CIB_file" = "{cluster.path}" ]; then
    case "$*" in *--ban*)
        for n in n2 n3; do
            "{crm_attribute}" --node "$n" --name standby --update on >/dev/null 2>&1 || exit 99
        done;;
    esac
fi
exec "$REAL" "$@"
""")  # fmt: skip
    ban = agent(cluster, bin_dir)
    record = ban.move_away("sip down")
    assert record.result is ActionOutcome.FAILED, record
    assert "changed between read and write" in record.detail, record.detail
    assert record.detail.endswith("undone"), record.detail
    assert cluster.constraints() == {}  # the ban is gone: g_pbx may stay on n1
