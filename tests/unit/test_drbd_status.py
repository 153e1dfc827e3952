"""Parsing and judging `drbdsetup status --json` (pure; documents in tests/data/drbd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwatch.model import Outcome
from sipwatch.probes.drbd import DrbdParseError, DrbdSpec, assess, parse_status

DATA = Path(__file__).resolve().parent.parent / "data" / "drbd"


def judge(name: str, resource: str | None = "portsip"):
    return assess(parse_status((DATA / name).read_text()), resource)


def test_parse_reads_roles_states_and_bytes() -> None:
    (r,) = parse_status((DATA / "secondary_inconsistent_syncing.json").read_text())
    assert (r.name, r.role, r.suspended) == ("portsip", "Secondary", False)
    assert [(v.volume, v.disk_state, v.quorum) for v in r.volumes] == [(0, "Inconsistent", True)]
    pbx1, pbx3 = r.connections
    assert (pbx1.name, pbx1.peer_node_id, pbx1.connection_state, pbx1.peer_role) == (
        "pbx1",
        0,
        "Connected",
        "Primary",
    )
    (pv,) = pbx1.volumes
    assert (pv.replication_state, pv.peer_disk_state) == ("SyncTarget", "UpToDate")
    assert pv.out_of_sync_bytes == 262144 * 1024 and pv.percent_in_sync == 97.5
    assert pbx3.volumes[0].out_of_sync_bytes == 0


@pytest.mark.parametrize(
    "name, outcome, blocks, phrases",
    [
        ("primary_healthy.json", Outcome.OK, False, ["portsip Primary, disk UpToDate, 2 peers"]),
        ("secondary_healthy.json", Outcome.OK, False, ["portsip Secondary"]),
        (
            "primary_peer_disconnected.json",
            Outcome.DEGRADED,
            False,
            ["peer pbx2 Connecting: not replicating"],
        ),
        (
            "secondary_outdated.json",
            Outcome.DEGRADED,
            True,
            ["NOT eligible to take over: portsip/0 disk is Outdated, not UpToDate"],
        ),
        (
            "secondary_inconsistent_syncing.json",
            Outcome.DEGRADED,
            True,
            ["disk is Inconsistent", "local disk Inconsistent"],
        ),
        ("primary_diskless.json", Outcome.DOWN, True, ["disk is Diskless"]),
        (
            "primary_suspended_no_quorum.json",
            Outcome.HUNG,
            True,
            ["has no quorum", "I/O suspended", "peer pbx3 Connecting"],
        ),
        (
            "primary_out_of_sync.json",
            Outcome.DEGRADED,
            False,
            ["peer pbx3/0 4194304 bytes out of sync"],
        ),
    ],
)
def test_judgement(name: str, outcome: Outcome, blocks: bool, phrases: list[str]) -> None:
    a, extra = judge(name)
    assert (a.outcome, a.blocks_takeover) == (outcome, blocks), a.detail
    for phrase in phrases:
        assert phrase in a.detail
    assert extra["resources"][0]["name"] == "portsip"


def test_extra_summarises_the_resource() -> None:
    _, extra = judge("primary_peer_disconnected.json")
    assert (extra["role"], extra["disk_state"]) == ("Primary", "UpToDate")
    assert extra["connection_states"] == {"pbx2": "Connecting", "pbx3": "Connected"}
    assert extra["peer_disk_states"] == {"pbx2": "DUnknown", "pbx3": "UpToDate"}
    assert extra["out_of_sync_bytes"] == 0
    _, extra = judge("primary_out_of_sync.json")
    assert extra["out_of_sync_bytes"] == 4096 * 1024


def test_missing_resource_and_nothing_up_are_down_and_block() -> None:
    a, _ = judge("primary_healthy.json", "recordings")
    assert (a.outcome, a.blocks_takeover) == (Outcome.DOWN, True)
    assert "resource recordings is not up on this node (listed: portsip)" in a.detail
    a, _ = judge("none.json", None)
    assert (a.outcome, a.blocks_takeover) == (Outcome.DOWN, True)
    assert "no DRBD resource is up" in a.detail


def test_all_resources_or_one() -> None:
    a, extra = judge("two_resources.json", None)
    assert a.outcome is Outcome.OK and len(extra["resources"]) == 2
    assert "+1 more resources" in a.detail
    a, extra = judge("two_resources.json", "recordings")
    assert (a.outcome, extra["role"]) == (Outcome.OK, "Secondary")


def test_dual_primary_and_lonely_primary_are_degraded() -> None:
    doc = """[{"name": "r0", "role": "Primary", "devices": [{"volume": 0,
      "disk-state": "UpToDate", "quorum": true}], "connections": [{"name": "b",
      "connection-state": "Connected", "peer-role": "Primary", "peer_devices": [{"volume": 0,
      "replication-state": "Established", "peer-disk-state": "UpToDate", "out-of-sync": 0}]}]},
      {"name": "r1", "role": "Primary", "devices": [{"volume": 0, "disk-state": "UpToDate"}]}]"""
    a, _ = assess(parse_status(doc), None)
    assert (a.outcome, a.blocks_takeover) == (Outcome.DEGRADED, False)
    assert "r0 peer b is Primary too (dual primary)" in a.detail
    assert "r1 is Primary with no peer: nothing replicates" in a.detail


def test_diskless_client_is_never_eligible_but_ok() -> None:
    doc = """[{"name": "r0", "role": "Secondary", "devices": [{"volume": 0,
      "disk-state": "Diskless", "client": true, "quorum": true}], "connections": []}]"""
    a, _ = assess(parse_status(doc), "r0")
    assert (a.outcome, a.blocks_takeover) == (Outcome.OK, True)
    assert "intentionally diskless" in a.detail


@pytest.mark.parametrize(
    "text, message",
    [
        ((DATA / "garbage.txt").read_text(), "not JSON"),
        ('{"name": "r0"}', "top level must be a list of objects"),
        ('[{"role": "Primary"}]', "missing 'name'"),
        ('[{"name": "r0", "role": 1}]', "'role' has the wrong type"),
        ('[{"name": "r0", "role": "Primary", "devices": [{"volume": 0}]}]', "'disk-state'"),
        ('[{"name": "r0", "role": "Primary", "connections": {}}]', "connections must be a list"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_garbage_is_a_parse_error(text: str | bytes, message: str) -> None:
    with pytest.raises(DrbdParseError, match=message):
        parse_status(text)


def _peer_device(fields: str) -> str:
    return (
        '[{"name": "r0", "role": "Primary", "connections": [{"name": "b", '
        '"connection-state": "Connected", "peer_devices": [{"volume": 0, '
        '"replication-state": "SyncSource", "peer-disk-state": "Inconsistent", '
        f"{fields}}}]}}]}}]"
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        # json.loads takes these non-JSON words as floats; a NaN passes every comparison.
        ('"percent-in-sync": NaN', "NaN is not a JSON number"),
        ('"percent-in-sync": Infinity', "Infinity is not a JSON number"),
        ('"out-of-sync": -Infinity', "-Infinity is not a JSON number"),
        ('"percent-in-sync": 250.0', "'percent-in-sync' = 250.0 is out of range 0-100"),
        ('"out-of-sync": -8', "'out-of-sync' = -8 is out of range"),
        # JSON numbers are ASCII: the C scanner takes no other digit (checked here, not fixed)
        ('"out-of-sync": \u0661', "not JSON"),
        ('"out-of-sync": \uff18', "not JSON"),
    ],
)
def test_numbers_outside_their_range_are_parse_errors(fields: str, message: str) -> None:
    assert parse_status(_peer_device('"out-of-sync": 8'))  # the document is otherwise fine
    with pytest.raises(DrbdParseError, match=message):
        parse_status(_peer_device(fields))


def test_spec_validation() -> None:
    assert DrbdSpec().name == "drbd:all"
    assert DrbdSpec(resource="portsip").command == ("drbdsetup", "status", "--json")
    with pytest.raises(ValueError, match="command"):
        DrbdSpec(command=())
    with pytest.raises(ValueError, match="resource"):
        DrbdSpec(resource=" ")
