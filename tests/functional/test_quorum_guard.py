"""The quorum guard (sipwatch.cluster.quorum): what it reads, what it removes, what it leaves.

- parsing: corosync-quorumtool's own output, captured in the lab (quorate, then the
  partition);
- the tool's lifecycle: a tool that ends is reported as "unknown" and restarted; a missing
  tool turns the guard off, loudly, without taking anything down;
- no-quorum-policy read from a real CIB file with the real crm_attribute;
- the release itself against real rtnetlink in a namespace this module makes (a veth pair,
  the VIP on one end). The whole guard against a real partition is the lab's
  `test_partition_of_active`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipwatch.cluster.audit import AuditLog
from sipwatch.cluster.pacemaker import PacemakerTools, ToolPolicy
from sipwatch.cluster.quorum import QuorumGuard, parse_quorate, quorum_argv, quorum_events
from sipwatch.netlink import vip_state
from testbed.netns import Netns, require_root, run_async_in, veth
from testbed.pacemaker import FileCluster

VIP = "10.99.7.10"

# `corosync-quorumtool -m` on lab node n1: at start, then after its switch port went down.
CAPTURED = """\
Quorum information
------------------
Date:             Thu Nov 26 03:05:37 2026
Quorum provider:  corosync_votequorum
Nodes:            3
Node ID:          1
Ring ID:          1.15
Quorate:          Yes

Votequorum information
----------------------
Expected votes:   3
Highest expected: 3
Total votes:      3
Quorum:           2
Flags:            Quorate

Membership information
----------------------
    Nodeid      Votes Name
         1          1 n1 (local)
         2          1 n2
         3          1 n3
Quorum information
------------------
Date:             Thu Nov 26 03:05:42 2026
Quorum provider:  corosync_votequorum
Nodes:            1
Node ID:          1
Ring ID:          1.19
Quorate:          No

Votequorum information
----------------------
Expected votes:   3
Highest expected: 3
Total votes:      1
Quorum:           2 Activity blocked
Flags:

Membership information
----------------------
    Nodeid      Votes Name
         1          1 n1 (local)
"""


def test_parse_finds_each_quorum_report_and_nothing_else() -> None:
    seen = [v for line in CAPTURED.splitlines() if (v := parse_quorate(line)) is not None]
    assert seen == [True, False]
    # "Flags: Quorate" and "Quorum: 2" are not the Quorate line.
    assert parse_quorate("Flags:            Quorate") is None
    assert parse_quorate("Quorate:          Maybe") is None


def test_a_tool_that_ends_is_unknown_then_restarted() -> None:
    """A real process that prints one report and exits (what corosync-quorumtool does when
    corosync stops): True, then None (unknown), then the restart reports again."""
    sh = shutil.which("sh")
    assert sh
    argv = [sh, "-c", "echo 'Quorate:          Yes'"]

    async def first_four() -> list[bool | None]:
        events = quorum_events(argv, restart_s=(0.05, 0.1))
        got = [await anext(events) for _ in range(4)]
        await events.aclose()  # type: ignore[attr-defined]
        return got

    assert asyncio.run(asyncio.wait_for(first_four(), 10)) == [True, None, True, None]


def test_a_tool_that_cannot_be_run_is_unknown_and_retried(tmp_path: Path) -> None:
    tool = tmp_path / "quorumtool"
    tool.write_text("not a program")  # not executable

    async def first_two() -> list[bool | None]:
        events = quorum_events([str(tool), "-m"], restart_s=(0.05, 0.1))
        got = [await anext(events) for _ in range(2)]
        await events.aclose()  # type: ignore[attr-defined]
        return got

    assert asyncio.run(asyncio.wait_for(first_two(), 10)) == [None, None]


def test_missing_tool_turns_the_guard_off_loudly(caplog: pytest.LogCaptureFixture) -> None:
    assert quorum_argv("no-such-quorumtool-here") is None
    guard = _guard(AuditLog(), policy="stop", argv=None)

    async def run() -> None:
        await asyncio.wait_for(guard.run(asyncio.Event()), 5)

    with caplog.at_level(logging.ERROR, "sipwatch.cluster"):
        asyncio.run(run())  # returns at once: nothing to watch
    assert "quorum_guard_off" in caplog.text


def test_no_quorum_policy_from_a_real_cib(tmp_path: Path) -> None:
    cluster = FileCluster.build(tmp_path / "cib.xml")
    tools = PacemakerTools(cib_file=cluster.path, policy=ToolPolicy(timeout_s=10, total_s=10))
    assert tools.cluster_option("no-quorum-policy") is None  # unset: Pacemaker's default
    cluster.set_property("no-quorum-policy", "freeze")
    assert tools.cluster_option("no-quorum-policy") == "freeze"


# --- the release, on real rtnetlink --------------------------------------------------------------
@pytest.fixture
def ns() -> Iterator[Netns]:
    why = require_root()
    if why:
        pytest.skip(f"!!! NOT TESTED: releasing the VIP needs a network namespace: {why} !!!")
    made = Netns.create("quorum")
    try:
        veth(made, "vip0", made, "peer0")
        yield made
    finally:
        made.delete()


def _guard(
    audit: AuditLog, *, policy: str | None, argv: list[str] | None = None, dry_run: bool = False
) -> QuorumGuard:
    woken: list[str] = []
    return QuorumGuard(
        address=VIP,
        interface="vip0",
        node="n1",
        resource="g_pbx",
        audit=audit,
        read_policy=lambda: policy,
        argv=argv,
        dry_run=dry_run,
        on_release=woken.append,
    )


def _lose_quorum(ns: Netns, guard: QuorumGuard) -> bool:
    """Quorum reported, then lost; True when the VIP is still held afterwards."""

    async def run() -> bool:
        await guard.observe(True)
        await guard.observe(False)
        return (await vip_state(VIP, "vip0")).held

    return run_async_in(ns, run, timeout_s=20)


def test_lost_quorum_releases_a_held_vip(ns: Netns) -> None:
    ns.add_address(f"{VIP}/24", "vip0")
    audit = AuditLog()
    assert _lose_quorum(ns, _guard(audit, policy="stop")) is False
    [record] = audit.records()
    assert (record.action, record.result, record.failover) == ("release_vip", "done", True)
    assert record.summary == f"release VIP {VIP}/24 from vip0"
    assert "lost quorum" in record.detail and "no-quorum-policy=stop" in record.detail


def test_lost_quorum_leaves_the_vip_where_the_partition_keeps_running(ns: Netns) -> None:
    ns.add_address(f"{VIP}/24", "vip0")
    for policy in ("freeze", "ignore"):
        audit = AuditLog()
        assert _lose_quorum(ns, _guard(audit, policy=policy)) is True
        assert audit.records() == ()


def test_unreadable_policy_leaves_the_vip_to_pacemaker(ns: Netns) -> None:
    ns.add_address(f"{VIP}/24", "vip0")
    audit = AuditLog()
    assert _lose_quorum(ns, _guard(audit, policy=None)) is True
    [record] = audit.records()
    assert (record.result, record.failover) == ("refused", False)
    assert "could not be read" in record.detail


def test_dry_run_reports_and_keeps_the_vip(ns: Netns) -> None:
    ns.add_address(f"{VIP}/24", "vip0")
    audit = AuditLog()
    assert _lose_quorum(ns, _guard(audit, policy="stop", dry_run=True)) is True
    [record] = audit.records()
    assert (record.result, record.dry_run) == ("would", True)


def test_nothing_to_release_on_a_standby(ns: Netns) -> None:
    audit = AuditLog()
    assert _lose_quorum(ns, _guard(audit, policy="stop")) is False
    assert audit.records() == ()


def test_a_hanging_policy_read_does_not_delay_the_release(ns: Netns) -> None:
    """The policy is re-read in the background on every quorate report; when a read hangs
    (crm tools hanging) and quorum then goes, the cached policy decides at once."""
    ns.add_address(f"{VIP}/24", "vip0")
    audit = AuditLog()
    release = threading.Event()
    calls: list[float] = []

    def read_policy() -> str | None:
        calls.append(time.monotonic())
        if len(calls) > 1:
            release.wait(10)  # the second read hangs until the test lets it go
        return "stop"

    guard = _guard(audit, policy="stop")
    guard.read_policy = read_policy

    async def run() -> tuple[bool, float]:
        await guard.observe(True)
        await asyncio.sleep(0.2)  # the first read is done: "stop" is cached
        started = time.monotonic()  # a blocking re-read would hold the next line ~10 s
        await guard.observe(True)  # the second read hangs
        await guard.observe(False)
        took = time.monotonic() - started
        held = (await vip_state(VIP, "vip0")).held
        release.set()
        return held, took

    held, took = run_async_in(ns, run, timeout_s=20)
    assert held is False and took < 2, (held, took)
    assert len(calls) == 2
    [record] = audit.records()
    assert record.result == "done"
