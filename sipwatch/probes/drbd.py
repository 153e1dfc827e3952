"""`drbd`: may this node serve the PBX data? DRBD 9 replication state from
`drbdsetup status --json` (drbd-utils 9): role, local disk state, peer disk states,
connection states, out-of-sync bytes.

Owns: running the status command (a declared seam: `command` is an argv list, default
`drbdsetup status --json`, so tests point it at a script printing recorded documents; the
DRBD kernel module cannot load on test machines), parsing its JSON (pure: `parse_status`),
and judging it (pure: `assess`). Must not know: Pacemaker, or which node should be Primary.

The JSON shape (drbd-utils `drbdsetup.c`, `resource_status_json` and friends): a list of
resources, each with "name", "role", "suspended", "devices" (one per volume: "volume",
"disk-state", "client", "quorum") and "connections" (one per peer: "name", "peer-node-id",
"connection-state", "peer-role", "peer_devices": "volume", "replication-state",
"peer-disk-state", "peer-client", "out-of-sync" in KiB, "percent-in-sync").

Judgement, worst wins (ok < degraded < hung < down):
    local disk not UpToDate          blocks_takeover (never a takeover target); Diskless,
                                     Failed, Detaching -> down, else (Outdated, Inconsistent,
                                     Consistent, Attaching, Negotiating...) -> degraded
    intentionally diskless (client)  blocks_takeover, outcome ok (it is meant to be so)
    no quorum on a volume            blocks_takeover, degraded (DRBD refuses to promote)
    Primary with I/O suspended       hung (writes block: the PBX database freezes)
    a peer not Connected             degraded (replication to it stopped); not blocking:
                                     after a Primary crash the survivors see exactly this
    a diskful peer not UpToDate      degraded (resync running or peer outdated)
    out-of-sync > 0 with a peer      degraded
    Primary with a Primary peer      degraded (dual primary)
    Primary with no peer at all      degraded (nothing replicates)
    resource not up / none up        down, blocks_takeover
Command problems: not installed or not permitted -> local_error; non-zero exit (e.g. no
kernel module: nothing is up) -> down, blocks_takeover; no answer in time -> timeout;
output that is not the documented JSON -> malformed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sipwatch.model import EXTRA_MISSING_TOOL, Outcome, ProbeResult
from sipwatch.probes._command import DENIED, FAILED, MISSING, TIMEOUT, run_command
from sipwatch.probes._sip import FORBID_EXTRA, ProbeContext
from sipwatch.probes.kind import ProbeKind, check_timing

UP_TO_DATE = "UpToDate"
CONNECTED = "Connected"
PRIMARY = "Primary"
#: Local disk states in which this node holds no usable replica at all.
_NO_DISK = frozenset({"Diskless", "Failed", "Detaching"})
_SEVERITY = {Outcome.OK: 0, Outcome.DEGRADED: 1, Outcome.HUNG: 2, Outcome.DOWN: 3}
_DEFAULT_COMMAND = ("drbdsetup", "status", "--json")


@dataclass(frozen=True, kw_only=True, slots=True)
class DrbdSpec:
    """`resource`: the DRBD resource holding the PBX data (None: judge every resource the
    command lists). `command`: argv of the status command (no shell)."""

    __pydantic_config__ = FORBID_EXTRA

    kind: Literal["drbd"] = "drbd"
    name: str = ""
    resource: str | None = None
    command: tuple[str, ...] = _DEFAULT_COMMAND
    timeout_s: float = 5.0
    interval_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.command or not all(isinstance(a, str) and a for a in self.command):
            raise ValueError("command must be a non-empty list of non-empty strings")
        check_timing(self.timeout_s, self.interval_s)
        if self.resource is not None and not self.resource.strip():
            raise ValueError("resource must not be empty (omit it to check every resource)")
        if not self.name:
            object.__setattr__(self, "name", f"drbd:{self.resource or 'all'}")


class DrbdParseError(ValueError):
    """The status output is not the documented `drbdsetup status --json` shape."""


@dataclass(frozen=True, slots=True)
class Volume:
    volume: int
    disk_state: str
    client: bool = False
    quorum: bool | None = None


@dataclass(frozen=True, slots=True)
class PeerVolume:
    volume: int
    replication_state: str
    peer_disk_state: str
    peer_client: bool = False
    out_of_sync_bytes: int = 0
    percent_in_sync: float | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    name: str
    connection_state: str
    peer_role: str
    peer_node_id: int | None = None
    volumes: tuple[PeerVolume, ...] = ()


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    role: str
    suspended: bool = False
    volumes: tuple[Volume, ...] = ()
    connections: tuple[Connection, ...] = ()


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise DrbdParseError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DrbdParseError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = obj.get(key, default)
    return value if isinstance(value, kind) else default


def _opt_number(
    obj: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any,
    where: str,
    high: int,
) -> Any:
    """`_opt` for a count or a percentage: when present it must lie in 0..high."""
    value = _opt(obj, key, kind, default)
    if value is not None and not 0 <= value <= high:
        raise DrbdParseError(f"{where}: {key!r} = {value!r} is out of range 0-{high}")
    return value


def _refuse_constant(name: str) -> None:
    # json.loads turns the non-JSON words NaN, Infinity and -Infinity into floats; drbdsetup
    # never prints them, and a NaN compares false with everything (it would pass any bound).
    raise ValueError(f"{name} is not a JSON number")


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DrbdParseError(f"{where} must be a list of objects")
    return value


def parse_status(text: str | bytes) -> list[Resource]:
    """Parse `drbdsetup status --json` output. Raises DrbdParseError on anything else."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DrbdParseError(f"not JSON: {exc}") from None
    except RecursionError:  # json.loads recurses per level; drbdsetup nests four deep
        raise DrbdParseError("JSON nested too deeply") from None
    resources: list[Resource] = []
    for r in _objects(data, "top level"):
        name = _get(r, "name", str, "resource")
        where = f"resource {name}"
        volumes = tuple(
            Volume(
                volume=_get(d, "volume", int, f"{where} device"),
                disk_state=_get(d, "disk-state", str, f"{where} device"),
                client=bool(_opt(d, "client", bool, False)),
                quorum=_opt(d, "quorum", bool, None),
            )
            for d in _objects(r.get("devices", []), f"{where}: devices")
        )
        connections = []
        for c in _objects(r.get("connections", []), f"{where}: connections"):
            peer = _get(c, "name", str, f"{where} connection")
            cwhere = f"{where} peer {peer}"
            peer_volumes = tuple(
                PeerVolume(
                    volume=_get(p, "volume", int, cwhere),
                    replication_state=_get(p, "replication-state", str, cwhere),
                    peer_disk_state=_get(p, "peer-disk-state", str, cwhere),
                    peer_client=bool(_opt(p, "peer-client", bool, False)),
                    # drbdsetup prints sectors / 2, i.e. KiB.
                    out_of_sync_bytes=1024 * _opt_number(p, "out-of-sync", int, 0, cwhere, 2**53),
                    percent_in_sync=_opt_number(
                        p, "percent-in-sync", (int, float), None, cwhere, 100
                    ),
                )
                for p in _objects(c.get("peer_devices", []), f"{cwhere}: peer_devices")
            )
            connections.append(
                Connection(
                    name=peer,
                    connection_state=_get(c, "connection-state", str, cwhere),
                    peer_role=_opt(c, "peer-role", str, "Unknown"),
                    peer_node_id=_opt(c, "peer-node-id", int, None),
                    volumes=peer_volumes,
                )
            )
        resources.append(
            Resource(
                name=name,
                role=_get(r, "role", str, where),
                suspended=bool(_opt(r, "suspended", bool, False)),
                volumes=volumes,
                connections=tuple(connections),
            )
        )
    return resources


@dataclass(slots=True)
class Assessment:
    outcome: Outcome = Outcome.OK
    blocks_takeover: bool = False
    findings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

    def worse(self, outcome: Outcome, finding: str) -> None:
        if _SEVERITY[outcome] > _SEVERITY[self.outcome]:
            self.outcome = outcome
        self.findings.append(finding)

    def block(self, why: str) -> None:
        self.blocks_takeover = True
        self.blockers.append(why)

    @property
    def detail(self) -> str:
        parts = []
        if self.blockers:
            parts.append("NOT eligible to take over: " + ", ".join(self.blockers))
        parts.extend(self.findings)
        return "; ".join(parts)


def _assess_resource(r: Resource, a: Assessment) -> None:
    label = r.name
    for v in r.volumes:
        vol = f"{label}/{v.volume}"
        if v.client:
            a.block(f"{vol} is intentionally diskless (client)")
            a.findings.append(f"{vol} diskless client")
        elif v.disk_state != UP_TO_DATE:
            a.block(f"{vol} disk is {v.disk_state}, not UpToDate")
            outcome = Outcome.DOWN if v.disk_state in _NO_DISK else Outcome.DEGRADED
            a.worse(outcome, f"{vol} local disk {v.disk_state}")
        if v.quorum is False:
            a.block(f"{vol} has no quorum")
            a.worse(Outcome.DEGRADED, f"{vol} has no quorum")
    if r.suspended and r.role == PRIMARY:
        a.worse(Outcome.HUNG, f"{label} is Primary with I/O suspended: writes block")
    if r.role == PRIMARY and not r.connections:
        a.worse(Outcome.DEGRADED, f"{label} is Primary with no peer: nothing replicates")
    for c in r.connections:
        peer = f"{label} peer {c.name}"
        if c.connection_state != CONNECTED:
            a.worse(Outcome.DEGRADED, f"{peer} {c.connection_state}: not replicating")
            continue
        if r.role == PRIMARY and c.peer_role == PRIMARY:
            a.worse(Outcome.DEGRADED, f"{peer} is Primary too (dual primary)")
        for p in c.volumes:
            if not p.peer_client and p.peer_disk_state != UP_TO_DATE:
                sync = (
                    f", {p.percent_in_sync:.1f}% in sync" if p.percent_in_sync is not None else ""
                )
                a.worse(
                    Outcome.DEGRADED,
                    f"{peer}/{p.volume} disk {p.peer_disk_state} ({p.replication_state}{sync})",
                )
            elif p.out_of_sync_bytes > 0:
                a.worse(
                    Outcome.DEGRADED,
                    f"{peer}/{p.volume} {p.out_of_sync_bytes} bytes out of sync",
                )


def summary(r: Resource) -> dict[str, Any]:
    """One resource as plain data for `extra` (JSON output, the policy)."""
    return {
        "name": r.name,
        "role": r.role,
        "suspended": r.suspended,
        "disk_states": {str(v.volume): v.disk_state for v in r.volumes},
        "peers": [
            {
                "name": c.name,
                "node_id": c.peer_node_id,
                "connection_state": c.connection_state,
                "role": c.peer_role,
                "disk_states": {str(p.volume): p.peer_disk_state for p in c.volumes},
                "replication_states": {str(p.volume): p.replication_state for p in c.volumes},
                "out_of_sync_bytes": sum(p.out_of_sync_bytes for p in c.volumes),
            }
            for c in r.connections
        ],
    }


def assess(resources: list[Resource], want: str | None) -> tuple[Assessment, dict[str, Any]]:
    """Judge parsed resources (all of them, or only `want`). Pure: no I/O, no clock."""
    a = Assessment()
    listed = [r.name for r in resources]
    chosen = [r for r in resources if want is None or r.name == want]
    if not chosen:
        what = f"resource {want} is not up on this node" if want else "no DRBD resource is up"
        a.worse(Outcome.DOWN, f"{what} (listed: {', '.join(listed) or 'none'})")
        a.block("no replica here")
        return a, {"resources": [], "listed": listed}
    for r in chosen:
        _assess_resource(r, a)
    extra: dict[str, Any] = {
        "resources": [summary(r) for r in chosen],
        "out_of_sync_bytes": sum(
            p.out_of_sync_bytes for r in chosen for c in r.connections for p in c.volumes
        ),
    }
    first = chosen[0]
    extra["role"] = first.role
    extra["disk_state"] = first.volumes[0].disk_state if first.volumes else None
    extra["connection_states"] = {c.name: c.connection_state for c in first.connections}
    extra["peer_disk_states"] = {
        c.name: (c.volumes[0].peer_disk_state if c.volumes else None) for c in first.connections
    }
    if not a.findings:
        peers = len(first.connections)
        a.findings.append(
            f"{first.name} {first.role}, disk UpToDate, "
            f"{peers} peer{'s' if peers != 1 else ''} Connected and UpToDate, in sync"
            + (f" (+{len(chosen) - 1} more resources)" if len(chosen) > 1 else "")
        )
    return a, extra


def _result(spec: DrbdSpec, outcome: Outcome, detail: str, **kw: Any) -> ProbeResult:
    return ProbeResult(
        probe=spec.name,
        kind=spec.kind,
        target=spec.resource or "all",
        outcome=outcome,
        method=" ".join(spec.command),
        detail=detail,
        scope="node",
        **kw,
    )


async def probe(spec: DrbdSpec, ctx: ProbeContext) -> ProbeResult:
    import time

    started = time.monotonic()
    run = await run_command(spec.command, timeout_s=spec.timeout_s)
    rtt_ms = round((time.monotonic() - started) * 1000, 3)
    if run.kind == MISSING:
        return _result(
            spec,
            Outcome.LOCAL_ERROR,
            f"cannot run the status command: {run.error} (drbd-utils 9 installed?)",
            extra={EXTRA_MISSING_TOOL: spec.command[0].rsplit("/", 1)[-1]},
        )
    if run.kind == DENIED:
        return _result(spec, Outcome.LOCAL_ERROR, f"cannot run the status command: {run.error}")
    if run.kind == TIMEOUT:
        return _result(
            spec,
            Outcome.TIMEOUT,
            f"{run.error}: DRBD state unknown (a stuck drbdsetup often means blocked DRBD I/O)",
            rtt_ms=rtt_ms,
        )
    if run.kind == FAILED:
        why = run.stderr_line() or "no message"
        return _result(
            spec,
            Outcome.DOWN,
            f"NOT eligible to take over: status command exited {run.returncode} ({why}): "
            "DRBD is not up on this node",
            rtt_ms=rtt_ms,
            blocks_takeover=True,
            extra={"returncode": run.returncode},
        )
    try:
        resources = parse_status(run.stdout)
    except DrbdParseError as exc:
        return _result(spec, Outcome.MALFORMED, f"unexpected status output: {exc}", rtt_ms=rtt_ms)
    assessment, extra = assess(resources, spec.resource)
    return _result(
        spec,
        assessment.outcome,
        assessment.detail,
        rtt_ms=rtt_ms,
        blocks_takeover=assessment.blocks_takeover,
        extra=extra,
    )


KIND = ProbeKind(name="drbd", spec=DrbdSpec, probe=probe)
