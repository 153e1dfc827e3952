"""`vip`: does this node hold the cluster's virtual IP, on a link that is up? (rtnetlink)

Owns: judging the VIP's state (`judge`, pure; sipwatch.netlink reads it, one dump each, no
`ip` subprocess), and the kind's wake-up source (`VipWatch`): a netlink subscription that
makes every probe run at once when the VIP arrives, leaves, moves or its link changes — so
the daemon reacts at once instead of at the next interval. Must not know: Pacemaker (which
moves the VIP) or SIP ("the VIP answers SIP" is a `sip_options` probe whose URI is the VIP,
see docs/probes.md).

Outcomes (scope "node"):
    ok           the VIP is on a local interface whose link is up
    down         the VIP is not here (the normal state of a standby node: blocks_takeover
                 stays False unless the configured `interface` is missing or down, which
                 means this node could not take the VIP over either), or it is here on a
                 link that is down (blocks_takeover), or IPv6 duplicate address detection
                 failed for it (another node answers for it: blocks_takeover)
    local_error  netlink could not be read (permissions, no rtnetlink)
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from sipwatch.model import Outcome, ProbeResult
from sipwatch.netlink import VipState, vip_state
from sipwatch.probes._sip import FORBID_EXTRA, ProbeContext
from sipwatch.probes.kind import ProbeKind, WakeAll, check_timing

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("sipwatch.probes.vip")


@dataclass(frozen=True, kw_only=True, slots=True)
class VipSpec:
    """`address`: the VIP (no prefix length). `interface`: where the VIP lives when held
    here; when set, a missing or down interface means this node cannot take the VIP over."""

    __pydantic_config__ = FORBID_EXTRA

    address: str
    kind: Literal["vip"] = "vip"
    name: str = ""
    interface: str | None = None
    timeout_s: float = 2.0
    interval_s: float = 2.0
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            ip = ipaddress.ip_address(self.address.strip())
        except ValueError:
            raise ValueError(f"address {self.address!r} is not an IP address") from None
        check_timing(self.timeout_s, self.interval_s)
        object.__setattr__(self, "ip", ip)
        if not self.name:
            object.__setattr__(self, "name", f"vip:{ip}")


def judge(state: VipState) -> tuple[Outcome, bool, str]:
    """(outcome, blocks_takeover, detail) for a VIP state. Pure."""
    where = f"{state.address} on {state.interface}"
    if state.held:
        if state.dad_failed:
            return (
                Outcome.DOWN,
                True,
                f"{where}: duplicate address detection failed: another host uses the VIP",
            )
        if not state.link_up:
            return Outcome.DOWN, True, f"{where} but the link is down ({state.oper_state})"
        note = f"held: {where}, link {state.oper_state}"
        if state.expected_interface and state.interface != state.expected_interface:
            note += f" (not on the configured {state.expected_interface})"
        if state.tentative:
            note += " (IPv6 address still tentative)"
        return Outcome.OK, False, note
    if state.expected_interface is not None and not state.expected_up:
        why = "missing" if not state.expected_present else "down"
        return (
            Outcome.DOWN,
            True,
            f"{state.address} not held here, and {state.expected_interface} is {why}: "
            "this node cannot take the VIP over",
        )
    return Outcome.DOWN, False, f"{state.address} not held here"


async def probe(spec: VipSpec, ctx: ProbeContext) -> ProbeResult:
    started = time.monotonic()
    try:
        state = await vip_state(str(spec.ip), spec.interface)
    except (OSError, ImportError) as exc:
        return ProbeResult(
            probe=spec.name,
            kind=spec.kind,
            target=str(spec.ip),
            outcome=Outcome.LOCAL_ERROR,
            detail=f"cannot read addresses over netlink: {exc}",
        )
    outcome, blocks, detail = judge(state)
    return ProbeResult(
        probe=spec.name,
        kind=spec.kind,
        target=str(spec.ip),
        outcome=outcome,
        method="netlink",
        rtt_ms=round((time.monotonic() - started) * 1000, 3),
        detail=detail,
        extra=state.to_dict(),
        scope="node",
        blocks_takeover=blocks,
    )


class VipWatch:
    """Every probe runs at once when the VIP arrives, leaves, moves or its link changes
    (sipwatch.netlink.watch_vip). Netlink unavailable (no permission...): logged once, the
    watch ends, the probes still run on their intervals."""

    def __init__(self, spec: VipSpec, wake_all: WakeAll) -> None:
        self.address = spec.address
        self.wake_all = wake_all

    def seen(self, result: ProbeResult) -> None:
        pass  # netlink says more, and sooner, than the probe's own results

    async def run(self, stop: asyncio.Event) -> None:
        import asyncio

        from sipwatch.netlink import watch_vip

        events = watch_vip(self.address)
        try:
            while not stop.is_set():
                next_event = asyncio.ensure_future(anext(events))
                stopped = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    {next_event, stopped}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_event not in done:
                    next_event.cancel()
                    stopped.cancel()
                    return
                stopped.cancel()
                self.wake_all(f"vip {next_event.result().reason}")
        except StopAsyncIteration:
            return
        except Exception:  # netlink unavailable (no permission...): probes still run
            log.exception("event=vip_watch_failed address=%s", self.address)
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()


KIND = ProbeKind(name="vip", spec=VipSpec, probe=probe, wake=VipWatch)
