"""Shared fixtures: real SIP peers on the loopback (testbed) and closed ports.

    kamailio          session   Kamailio, qop on, TLS on, users USERS
    kam               function  the same peer; its faults are cleared (and a frozen group
                                resumed) after each test
    kamailio_noqop    session   a second Kamailio, qop off, no TLS
    sipp_uas          function  factory: sipp_uas("503", transport="udp") -> SippPeer,
                                every sipp started is stopped at teardown
    closed_udp_port   function  a loopback port nothing listens on (ICMP port unreachable)
    closed_tcp_port   function  a loopback port nothing listens on (connection refused)

A missing kamailio/sipp/openssl fails the test with the way to install them; it never skips
(skips are reserved for missing root privileges).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from testbed import (
    KamailioPeer,
    MissingToolError,
    SippPeer,
    free_port,
    start_kamailio,
    start_sipp_uas,
)

USERS = {"monitor": "monitor-secret-1", "alice": "alice-pw"}


class SippFactory(Protocol):
    def __call__(
        self, scenario: str, transport: str = "udp", *, port: int | None = None
    ) -> SippPeer: ...


def _start_kamailio(rundir: Path, *, qop: bool, tls: bool) -> KamailioPeer:
    try:
        return start_kamailio(rundir, users=dict(USERS), qop=qop, tls=tls)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KamailioPeer]:
    peer = _start_kamailio(tmp_path_factory.mktemp("kamailio"), qop=True, tls=True)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def kam(kamailio: KamailioPeer) -> Iterator[KamailioPeer]:
    yield kamailio
    if not kamailio.is_running():
        pytest.fail(
            "the session Kamailio is gone: a test stopped or killed it; tests that crash a "
            "PBX must start their own with testbed.start_kamailio",
            pytrace=False,
        )
    with contextlib.suppress(ProcessLookupError):
        os.killpg(kamailio.pid, signal.SIGCONT)  # in case a test froze it with SIGSTOP
    kamailio.clear_faults()


@pytest.fixture(scope="session")
def kamailio_noqop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KamailioPeer]:
    peer = _start_kamailio(tmp_path_factory.mktemp("kamailio-noqop"), qop=False, tls=False)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def sipp_uas(tmp_path: Path) -> Iterator[SippFactory]:
    started: list[SippPeer] = []

    def start(scenario: str, transport: str = "udp", *, port: int | None = None) -> SippPeer:
        try:
            peer = start_sipp_uas(scenario, tmp_path / "sipp", transport=transport, port=port)
        except MissingToolError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()


@pytest.fixture
def closed_udp_port() -> int:
    return free_port("udp")


@pytest.fixture
def closed_tcp_port() -> int:
    return free_port("tcp")


@pytest.fixture(params=["asyncio", "blocking"])
def run(request: pytest.FixtureRequest):
    """Run a probe spec through each driver: the asyncio one (daemon, config runs) and the
    blocking one (one-shot CLI on IP literals). Both must report the same things."""
    import asyncio

    from sipwatch.probes import kind_of, run_probe
    from sipwatch.probes._sip import ProbeContext

    async def go(spec, ctx: ProbeContext | None = None):
        ctx = ctx or ProbeContext()
        if request.param == "asyncio":
            return await run_probe(spec, ctx)
        probe_now = kind_of(spec).probe_now
        assert probe_now is not None, f"{spec.kind} has no blocking driver"
        result = await asyncio.to_thread(probe_now, spec, ctx)
        assert result is not None, "the blocking driver must take IP-literal URIs"
        return result

    go.driver = request.param  # type: ignore[attr-defined]
    return go
