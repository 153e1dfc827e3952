"""rtnetlink, the one place that speaks it (pyroute2): where an address is, whether its link
is up, being told when that changes, and removing an address.

Owns: `vip_state` (one address dump and one link dump, no `ip` subprocess), `watch_vip` (an
asynchronous subscription yielding a `VipEvent` whenever the address arrives, leaves, moves
or its link changes) and `delete_address`. Used by the `vip` and `from_vip` probes and by the
quorum guard (sipwatch.cluster.quorum). Must not know: probes, Pacemaker, or what a change
means (the `vip` probe judges a state, the daemon re-probes on an event).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

IFF_UP = 0x1
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
#: Operational states in which a link passes traffic. Loopback, dummy and some virtual
#: links report UNKNOWN while working (RFC 2863 ifOperStatus as Linux reports it).
_WORKING_OPER = frozenset({"UP", "UNKNOWN"})


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


def _reason(old: VipState, new: VipState) -> str:
    if old.held != new.held:
        return "arrived" if new.held else "left"
    if old.interface != new.interface:
        return "moved"
    if old.link_up != new.link_up:
        return "link_up" if new.link_up else "link_down"
    return "changed"


async def watch_vip(
    address: str, *, interface: str | None = None
) -> AsyncGenerator[VipEvent, None]:
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


async def delete_address(address: str, ifindex: Any, prefixlen: Any) -> None:
    """`ip addr del ADDRESS/PREFIX dev IFINDEX` over rtnetlink. An address already gone
    (Pacemaker's stop won the race) is not an error. Raises OSError."""
    from pyroute2 import AsyncIPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    conn = AsyncIPRoute()
    try:
        await conn.addr("del", index=ifindex, address=address, prefixlen=prefixlen)
    except NetlinkError as exc:
        if exc.code != 99:  # EADDRNOTAVAIL: not there any more
            raise OSError(exc.code, str(exc)) from None
    finally:
        conn.close()
