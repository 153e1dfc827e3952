"""`from_vip`: on the node holding the VIP, can an IVR or Queue server be reached *from* the
VIP? The server answers the PBX at the VIP, so this is the path its replies take back.

Owns: checking the VIP is held here (sipwatch.netlink), then either an OPTIONS from a
socket bound to the VIP (`method = "sip"`, the SIP layer with `source_address`) or a TCP
connect from the VIP to the server's SIP port (`method = "tcp"`). Must not know: the PBX
(nothing here passes through it; `via_vip_sip` covers VIP -> PBX -> server).

Legs (`extra["leg"]`, named in `detail`):
    "vip"            the VIP is not held by this node (or cannot be bound): local_error,
                     scope "node" — nothing was learnt about the server, and this never
                     counts toward failover (standby nodes see it all the time)
    "vip_to_server"  the server does not answer traffic from the VIP: the result's own
                     outcome (timeout, refused, unreachable, bad_status...), scope "remote"
    None             ok
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Literal

from sipwatch.errors import SipError
from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import ProbeContext, SipProbeSpec, base_result, probe_targets
from sipwatch.probes.kind import ProbeKind
from sipwatch.probes.sip_options import flow as options_flow
from sipwatch.sip.sockets import classify_os_error

LEG_VIP = "vip"
LEG_VIP_TO_SERVER = "vip_to_server"


@dataclass(frozen=True, kw_only=True, slots=True)
class FromVipSpec(SipProbeSpec):
    """`uri`: the IVR/Queue server. `source_address`: the VIP (required). `method`: "sip"
    (OPTIONS from the VIP) or "tcp" (connect from the VIP to the URI's host and port)."""

    kind: Literal["from_vip"] = "from_vip"
    method: Literal["sip", "tcp"] = "sip"

    def __post_init__(self) -> None:
        SipProbeSpec.__post_init__(self)
        if self.source_address is None:
            raise ValueError("source_address (the VIP) is required")
        if self.method == "tcp" and self.parsed_uri.scheme == "sips":
            raise ValueError("method tcp checks plain TCP reachability: use a sip: URI")


def _leg(result: ProbeResult, leg: str | None, scope: str, note: str = "") -> ProbeResult:
    detail = result.detail
    if note:
        detail = f"{note}: {detail}" if detail else note
    return replace(result, extra=dict(result.extra, leg=leg), scope=scope, detail=detail)


async def _tcp_connect(spec: FromVipSpec, ctx: ProbeContext) -> ProbeResult:
    from sipwatch.probes._sip import resolve_targets

    method = "TCP"
    try:
        targets = await asyncio.wait_for(resolve_targets(spec.parsed_uri, ctx), spec.timeout_s)
    except (TimeoutError, SipError) as exc:
        return base_result(spec, method, Outcome.DNS_ERROR, detail=str(exc) or "DNS timeout")
    target = targets[0]
    port = spec.parsed_uri.port or target.port
    started = time.monotonic()
    resolved = f"tcp:{target.host}:{port}"
    try:
        async with asyncio.timeout(spec.timeout_s):
            _, writer = await asyncio.open_connection(target.host, port, local_addr=spec.local_addr)
    except TimeoutError:
        return base_result(
            spec,
            method,
            Outcome.TIMEOUT,
            transport="tcp",
            resolved=resolved,
            detail=f"TCP connect from {spec.source_address} timed out",
        )
    except OSError as exc:
        kind, detail = classify_os_error(exc)
        return base_result(
            spec, method, Outcome(kind), transport="tcp", resolved=resolved, detail=detail
        )
    rtt_ms = round((time.monotonic() - started) * 1000, 3)
    local = writer.get_extra_info("sockname")
    writer.close()
    return base_result(
        spec,
        method,
        Outcome.OK,
        transport="tcp",
        resolved=resolved,
        rtt_ms=rtt_ms,
        detail=f"TCP connect from {local[0]}:{local[1]} accepted",
    )


async def probe(spec: FromVipSpec, ctx: ProbeContext) -> ProbeResult:
    from sipwatch.netlink import vip_state

    assert spec.source_address is not None
    method = "OPTIONS" if spec.method == "sip" else "TCP"
    try:
        state = await vip_state(spec.source_address)
    except (OSError, ImportError) as exc:
        failed = base_result(
            spec, method, Outcome.LOCAL_ERROR, detail=f"cannot read addresses: {exc}"
        )
        return _leg(failed, LEG_VIP, "node")
    if not state.held:
        skipped = base_result(
            spec,
            method,
            Outcome.LOCAL_ERROR,
            detail=f"the VIP {spec.source_address} is not held by this node: from_vip "
            "probes only on the VIP holder",
            extra={"vip_held": False},
        )
        return _leg(skipped, LEG_VIP, "node")
    if spec.method == "tcp":
        result = await _tcp_connect(spec, ctx)
    else:
        result = await probe_targets(
            spec, ctx, method, lambda t, tr, lo: options_flow(spec, ctx, t, tr, lo)
        )
    result = replace(result, extra=dict(result.extra, vip_held=True, vip_interface=state.interface))
    if result.outcome is Outcome.OK:
        return _leg(result, None, "node")
    if result.outcome is Outcome.LOCAL_ERROR:
        return _leg(result, LEG_VIP, "node", f"cannot probe from {spec.source_address}")
    return _leg(
        result,
        LEG_VIP_TO_SERVER,
        "remote",
        f"the server does not answer traffic from the VIP {spec.source_address}",
    )


KIND = ProbeKind(name="from_vip", spec=FromVipSpec, probe=probe)
