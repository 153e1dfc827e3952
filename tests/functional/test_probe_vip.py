"""`vip` and `watch_vip` against real rtnetlink, inside a network namespace this module makes:
a veth pair vip0 <-> peer0 (both ends inside), the VIP added and removed on vip0."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from sipwatch.model import Outcome, ProbeResult
from sipwatch.netlink import VipEvent, watch_vip
from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.vip import VipSpec
from testbed.netns import Netns, require_root, run_async_in, veth

VIP = "10.99.1.10"
VIP6 = "fd99::10"
CTX = ProbeContext()


@pytest.fixture
def ns() -> Iterator[Netns]:
    why = require_root()
    if why:
        pytest.skip(f"!!! NOT TESTED: VIP ownership needs a network namespace: {why} !!!")
    made = Netns.create("vip")
    try:
        veth(made, "vip0", made, "peer0")
        yield made
    finally:
        made.delete()  # the veth pair goes with it


def probe_in(ns: Netns, **kw: object) -> ProbeResult:
    spec = VipSpec(**kw)  # type: ignore[arg-type]
    return run_async_in(ns, lambda: run_probe(spec, CTX), timeout_s=10)


def test_absent_vip_is_down_but_does_not_block_takeover(ns: Netns) -> None:
    r = probe_in(ns, address=VIP, interface="vip0")
    assert (r.outcome, r.blocks_takeover, r.scope) == (Outcome.DOWN, False, "node"), r
    assert (r.extra["held"], r.extra["expected_up"]) == (False, True)
    assert r.detail == f"{VIP} not held here"


def test_held_vip_on_an_up_link_is_ok(ns: Netns) -> None:
    ns.add_address(f"{VIP}/32", "vip0")
    r = probe_in(ns, address=VIP, interface="vip0")
    assert (r.outcome, r.blocks_takeover) == (Outcome.OK, False), r
    assert (r.extra["interface"], r.extra["prefixlen"], r.extra["link_up"]) == ("vip0", 32, True)
    assert r.extra["oper_state"] == "UP"


def test_held_vip_on_a_dead_link_is_down_and_blocks(ns: Netns) -> None:
    ns.add_address(f"{VIP}/32", "vip0")
    ns.link("peer0", "down")  # no carrier on vip0: oper state LOWERLAYERDOWN
    r = probe_in(ns, address=VIP, interface="vip0")
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, True), r
    assert r.extra["held"] is True and r.extra["link_up"] is False
    assert "link is down (LOWERLAYERDOWN)" in r.detail


def test_missing_or_down_interface_blocks_takeover(ns: Netns) -> None:
    r = probe_in(ns, address=VIP, interface="nope0")
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, True), r
    assert "nope0 is missing" in r.detail
    ns.link("vip0", "down")
    r = probe_in(ns, address=VIP, interface="vip0")
    assert (r.outcome, r.blocks_takeover) == (Outcome.DOWN, True), r
    assert "vip0 is down" in r.detail


def test_vip_on_another_interface_is_ok_and_says_so(ns: Netns) -> None:
    ns.add_address(f"{VIP}/32", "peer0")
    r = probe_in(ns, address=VIP, interface="vip0")
    assert r.outcome is Outcome.OK, r
    assert r.extra["interface"] == "peer0"
    assert "not on the configured vip0" in r.detail


def test_ipv6_vip(ns: Netns) -> None:
    ns.ip("addr", "add", f"{VIP6}/128", "dev", "vip0", "nodad")
    r = probe_in(ns, address=VIP6)
    assert (r.outcome, r.extra["interface"], r.extra["prefixlen"]) == (Outcome.OK, "vip0", 128)
    r = probe_in(ns, address="fd99::11")
    assert r.outcome is Outcome.DOWN


def test_bad_address_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        VipSpec(address="vip.example.com")


def test_watch_follows_the_vip(ns: Netns) -> None:
    async def scenario() -> list[VipEvent]:
        seen: list[VipEvent] = []
        events: AsyncIterator[VipEvent] = watch_vip(VIP, interface="vip0")

        async def step(action: tuple[str, ...] | None) -> VipEvent:
            if action is not None:
                proc = await asyncio.create_subprocess_exec("ip", "-n", ns.name, *action)
                assert await asyncio.wait_for(proc.wait(), 5) == 0
            event = await asyncio.wait_for(anext(events), 3.0)
            seen.append(event)
            return event

        try:
            await step(None)
            await step(("addr", "add", f"{VIP}/32", "dev", "vip0"))
            await step(("link", "set", "peer0", "down"))
            await step(("link", "set", "peer0", "up"))
            await step(("addr", "del", f"{VIP}/32", "dev", "vip0"))
            # Nothing that matters changes: no event within the bounded wait.
            proc = await asyncio.create_subprocess_exec(
                "ip", "-n", ns.name, "addr", "add", "10.99.1.99/32", "dev", "vip0"
            )
            assert await asyncio.wait_for(proc.wait(), 5) == 0
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(events), 0.5)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return seen

    seen = run_async_in(ns, scenario, timeout_s=30)
    assert [e.reason for e in seen] == ["initial", "arrived", "link_down", "link_up", "left"]
    assert [e.state.held for e in seen] == [False, True, True, True, False]
    assert seen[1].state.interface == "vip0" and seen[1].previous is not None
    assert [e.state.link_up for e in seen[1:4]] == [True, False, True]
    assert all(b.at_s >= a.at_s for a, b in itertools.pairwise(seen))
