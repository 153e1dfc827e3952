"""`drbd` through its declared seam: `command` points at a real script standing in for
`drbdsetup status --json` (the kernel module cannot load here). The script prints a
recorded document, fails like drbdsetup without the module, hangs, or prints garbage."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sipwatch.model import EXTRA_MISSING_TOOL, Outcome, ProbeResult
from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.drbd import DrbdSpec

DATA = Path(__file__).resolve().parent.parent / "data" / "drbd"


def script(tmp_path: Path, body: str, name: str = "drbdsetup") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


async def drbd(command: list[str], **kw: object) -> ProbeResult:
    spec = DrbdSpec(command=tuple(command), **kw)  # type: ignore[arg-type]
    return await run_probe(spec, ProbeContext())


async def test_healthy_primary(tmp_path) -> None:
    cmd = script(tmp_path, f'cat "{DATA}/primary_healthy.json"')
    r = await drbd([cmd, "status", "--json"], resource="portsip")
    assert (r.outcome, r.blocks_takeover, r.scope) == (Outcome.OK, False, "node"), r
    assert (r.extra["role"], r.extra["disk_state"], r.extra["out_of_sync_bytes"]) == (
        "Primary",
        "UpToDate",
        0,
    )
    assert r.target == "portsip" and r.rtt_ms is not None


async def test_outdated_secondary_is_never_eligible(tmp_path) -> None:
    cmd = script(tmp_path, f'cat "{DATA}/secondary_outdated.json"')
    r = await drbd([cmd], resource="portsip")
    assert (r.outcome, r.blocks_takeover) == (Outcome.DEGRADED, True), r
    assert r.detail.startswith("NOT eligible to take over")


async def test_primary_with_disconnected_peer_is_degraded(tmp_path) -> None:
    cmd = script(tmp_path, f'cat "{DATA}/primary_peer_disconnected.json"')
    r = await drbd([cmd])
    assert (r.outcome, r.blocks_takeover) == (Outcome.DEGRADED, False), r
    assert r.extra["connection_states"]["pbx2"] == "Connecting"


async def test_suspended_primary_is_hung(tmp_path) -> None:
    cmd = script(tmp_path, f'cat "{DATA}/primary_suspended_no_quorum.json"')
    r = await drbd([cmd])
    assert (r.outcome, r.blocks_takeover) == (Outcome.HUNG, True), r


async def test_diskless_is_down(tmp_path) -> None:
    cmd = script(tmp_path, f'cat "{DATA}/primary_diskless.json"')
    r = await drbd([cmd])
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, True), r


async def test_no_kernel_module_is_down_and_blocks(tmp_path) -> None:
    # What drbdsetup 9 says and does when the drbd module is not loaded.
    cmd = script(
        tmp_path, "echo \"Could not connect to 'drbd' generic netlink family\" >&2; exit 20"
    )
    r = await drbd([cmd])
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, True), r
    assert "exited 20 (Could not connect to 'drbd' generic netlink family)" in r.detail
    assert r.extra["returncode"] == 20


async def test_resource_not_up_is_down(tmp_path) -> None:
    cmd = script(tmp_path, f'cat "{DATA}/none.json"')
    r = await drbd([cmd], resource="portsip")
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, True), r
    assert "resource portsip is not up on this node" in r.detail


async def test_hanging_command_times_out_and_is_killed(tmp_path) -> None:
    marker = tmp_path / "child.pid"
    cmd = script(tmp_path, f'sleep 30 & echo $! > "{marker}"; wait')
    started = time.monotonic()
    r = await drbd([cmd], timeout_s=0.5)
    assert r.outcome is Outcome.TIMEOUT, r
    assert time.monotonic() - started < 3
    assert "did not finish within 0.5 s" in r.detail and not r.blocks_takeover
    child = int(marker.read_text())
    deadline = time.monotonic() + 3
    while _state(child) not in ("gone", "Z"):  # killed with its group, by the probe
        assert time.monotonic() < deadline, "the hung command's child survived"
        await asyncio.sleep(0.02)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2]


async def test_garbage_output_is_malformed(tmp_path) -> None:
    cmd = script(tmp_path, f'cat "{DATA}/garbage.txt"')
    r = await drbd([cmd])
    assert r.outcome is Outcome.MALFORMED, r
    assert r.detail.startswith("unexpected status output: not JSON")


async def test_missing_binary_is_a_local_error(tmp_path) -> None:
    r = await drbd([str(tmp_path / "no" / "drbdsetup"), "status", "--json"])
    assert (r.outcome, r.blocks_takeover) == (Outcome.LOCAL_ERROR, False), r
    assert r.extra[EXTRA_MISSING_TOOL] == "drbdsetup"
    assert "command not found" in r.detail


async def test_not_executable_is_a_local_error(tmp_path) -> None:
    path = tmp_path / "drbdsetup"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)
    if os.geteuid() == 0:
        path.chmod(0o600)  # root may execute anything with an x bit: leave none
    r = await drbd([str(path)])
    assert r.outcome is Outcome.LOCAL_ERROR, r
    assert EXTRA_MISSING_TOOL not in r.extra


def test_default_command_is_drbdsetup() -> None:
    assert DrbdSpec().command == ("drbdsetup", "status", "--json")
