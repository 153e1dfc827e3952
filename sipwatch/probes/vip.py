"""`vip`: does this node hold the cluster's virtual IP, on a link that is up? (pyroute2)

Owns: reading addresses and links over rtnetlink (`vip_state`, one dump each, no `ip`
subprocess), judging them (`judge`, pure), and `watch_vip`, an asynchronous netlink
subscription that yields a `VipEvent` whenever the VIP arrives, leaves, moves or its link
changes — so the daemon reacts at once instead of at the next interval. Must not know:
Pacemaker (which moves the VIP) or SIP ("the VIP answers SIP" is a `sip_options` probe whose
URI is the VIP, see docs/probes.md).

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
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import FORBID_EXTRA, ProbeContext

IFF_UP = 0x1
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
#: Operational states in which a link passes traffic. Loopback, dummy and some virtual
#: links report UNKNOWN while working (RFC 2863 ifOperStatus as Linux reports it).
_WORKING_OPER = frozenset({"UP", "UNKNOWN"})


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
        if not 0 < self.timeout_s <= 60:
            raise ValueError("timeout_s must be > 0 and <= 60")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        object.__setattr__(self, "ip", ip)
        if not self.name:
            object.__setattr__(self, "name", f"vip:{ip}")


@dataclass(frozen=True, slots=True)
class VipState:
    """What netlink says about the VIP right now."""

    address: str
    held: bool
    interface: str | None = None  # where the VIP is (None when not held)
    ifindex: int | None = None
    prefixlen: int | None = None
    link_up: bool | None = None  # of the interface holding the VIP
    oper_state: str | None = None
    dad_failed: bool = False
    tentative: bool = False
    expected_interface: str | None = None
    expected_present: bool | None = None  # is the configured interface there at all
    expected_up: bool | None = None  # is the configured interface up

    @property
    def key(self) -> tuple[Any, ...]:
        """What a watcher reports changes of."""
        return (self.held, self.interface, self.link_up, self.dad_failed, self.expected_up)

    def to_dict(self) -> dict[str, Any]:
        return {
            "held": self.held,
            "interface": self.interface,
            "ifindex": self.ifindex,
            "prefixlen": self.prefixlen,
            "link_up": self.link_up,
            "oper_state": self.oper_state,
            "dad_failed": self.dad_failed,
            "tentative": self.tentative,
            "expected_interface": self.expected_interface,
            "expected_present": self.expected_present,
            "expected_up": self.expected_up,
        }


@dataclass(frozen=True, slots=True)
class VipEvent:
    """A change seen by `watch_vip`. `reason`: initial, arrived, left, moved, link_up,
    link_down or changed. `at_s` is time.monotonic() when the change was read."""

    state: VipState
    reason: str
    at_s: float
    previous: VipState | None = None


def _link_up(link: Any) -> tuple[bool, str]:
    oper = str(link.get("operstate") or link.get("IFLA_OPERSTATE") or "UNKNOWN")
    return bool(link["flags"] & IFF_UP) and oper in _WORKING_OPER, oper


async def vip_state(
    address: str, interface: str | None = None, *, ipr: Any | None = None
) -> VipState:
    """Read the VIP's state with one address dump and one link dump. Raises OSError."""
    from pyroute2 import AsyncIPRoute

    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    own = ipr is None
    conn = AsyncIPRoute() if ipr is None else ipr
    try:
        found = None
        async for msg in await conn.addr("dump", family=family):
            local = msg.get("local") or msg.get("address")
            if local is not None and ipaddress.ip_address(local) == ip:
                found = msg
                break
        links = {}
        async for link in await conn.link("dump"):
            links[link["index"]] = link
    finally:
        if own:
            conn.close()
    expected_present = expected_up = None
    if interface is not None:
        match = [lk for lk in links.values() if lk.get("ifname") == interface]
        expected_present = bool(match)
        expected_up = _link_up(match[0])[0] if match else False
    if found is None:
        return VipState(
            str(ip),
            False,
            expected_interface=interface,
            expected_present=expected_present,
            expected_up=expected_up,
        )
    flags = int(found.get("flags") or 0) | int(found.get("IFA_FLAGS") or 0)
    link = links.get(found["index"])
    up, oper = _link_up(link) if link is not None else (False, "ABSENT")
    return VipState(
        str(ip),
        True,
        interface=link.get("ifname") if link is not None else None,
        ifindex=found["index"],
        prefixlen=found["prefixlen"],
        link_up=up,
        oper_state=oper,
        dad_failed=bool(flags & IFA_F_DADFAILED),
        tentative=bool(flags & IFA_F_TENTATIVE),
        expected_interface=interface,
        expected_present=expected_present,
        expected_up=expected_up,
    )


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


def _reason(old: VipState, new: VipState) -> str:
    if old.held != new.held:
        return "arrived" if new.held else "left"
    if old.interface != new.interface:
        return "moved"
    if old.link_up != new.link_up:
        return "link_up" if new.link_up else "link_down"
    return "changed"


async def watch_vip(address: str, *, interface: str | None = None) -> AsyncIterator[VipEvent]:
    """Yield the VIP's state now, then again each time it changes (arrives, leaves, moves,
    its link goes up or down). Runs until the consumer stops iterating (closes it).

    Subscribes to RTMGRP_LINK and the IPv4/IPv6 address groups *before* the first read, so
    no change between the read and the subscription is lost; each batch of events leads to
    one fresh read, and only a change of what `VipState.key` covers is yielded. When the
    kernel drops events (ENOBUFS: the socket buffer overflowed) the subscription is
    reopened and the state read again. Raises OSError if netlink cannot be opened at all.
    """
    from pyroute2 import AsyncIPRoute
    from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

    groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR

    async def subscribe() -> Any:
        sock = AsyncIPRoute()
        try:
            await sock.bind(groups=groups)
        except BaseException:
            sock.close()
            raise
        return sock

    events = await subscribe()
    reader = AsyncIPRoute()
    try:
        state = await vip_state(address, interface, ipr=reader)
        yield VipEvent(state, "initial", time.monotonic())
        while True:
            try:
                async for _msg in events.get():
                    pass  # any address or link event: read the state again below
            except OSError:
                events.close()
                events = await subscribe()
            new = await vip_state(address, interface, ipr=reader)
            if new.key != state.key:
                yield VipEvent(new, _reason(state, new), time.monotonic(), state)
            state = new
    finally:
        with contextlib.suppress(Exception):
            events.close()
        with contextlib.suppress(Exception):
            reader.close()


def probe_now(spec: object, ctx: ProbeContext) -> ProbeResult | None:
    """No blocking variant: returning None makes callers use the asyncio one."""
    return None
