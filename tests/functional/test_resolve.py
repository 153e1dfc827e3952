"""RFC 3263 resolution against a real DNS server: dnsmasq on 127.0.0.1, a free port.

Every query goes to that dnsmasq (cfg.nameservers=("127.0.0.1",) plus its port) or to a closed
port on loopback; nothing here may reach another nameserver. dnsmasq logs each query it gets
(--log-queries), which lets tests prove which lookups were, and were not, made.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from sipwatch.sip.resolve import ResolveError, ResolverConfig, Target, resolve
from sipwatch.sip.uri import parse_uri

pytestmark = pytest.mark.peers

DNSMASQ = "/usr/sbin/dnsmasq"
ZONE = "sipwatch.test"

# The test zone, as dnsmasq options.
RECORDS = [
    # pbx: NAPTR → SRV → A/AAAA. WebSocket service must be ignored even though it sorts first.
    f"--naptr-record=pbx.{ZONE},5,10,s,SIPS+D2W,,_sips._ws.pbx.{ZONE}",
    f"--naptr-record=pbx.{ZONE},10,10,s,SIPS+D2T,,_sips._tcp.pbx.{ZONE}",
    f"--naptr-record=pbx.{ZONE},20,10,s,SIP+D2T,,_sip._tcp.pbx.{ZONE}",
    f"--naptr-record=pbx.{ZONE},30,10,s,SIP+D2U,,_sip._udp.pbx.{ZONE}",
    f"--srv-host=_sips._tcp.pbx.{ZONE},sip-a.{ZONE},5061,10,100",
    f"--srv-host=_sip._tcp.pbx.{ZONE},sip-a.{ZONE},5060,10,100",
    f"--srv-host=_sip._udp.pbx.{ZONE},sip-b.{ZONE},5062,20,40",
    f"--srv-host=_sip._udp.pbx.{ZONE},sip-a.{ZONE},5060,10,60",
    f"--host-record=pbx.{ZONE},192.0.2.100",
    f"--host-record=sip-a.{ZONE},192.0.2.1,2001:db8::1",
    f"--host-record=sip-b.{ZONE},192.0.2.2",
    # srvonly: SRV without NAPTR.
    f"--srv-host=_sip._tcp.srvonly.{ZONE},sip-b.{ZONE},5070,0,0",
    # aonly: neither NAPTR nor SRV.
    f"--host-record=aonly.{ZONE},192.0.2.50,2001:db8::50",
    # dup: the same target and port twice, at two priorities.
    f"--srv-host=_sip._udp.dup.{ZONE},sip-a.{ZONE},5060,10,0",
    f"--srv-host=_sip._udp.dup.{ZONE},sip-a.{ZONE},5060,20,0",
    # dead: SRV target "." = service decidedly not available (RFC 2782).
    f"--srv-host=_sip._udp.dead.{ZONE}",
    f"--host-record=dead.{ZONE},192.0.2.66",
]


@dataclass
class Dns:
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def cfg(
        self,
        *,
        transports: tuple[str, ...] = ("udp", "tcp", "tls"),
        prefer_ipv6: bool = False,
        timeout_s: float = 2.0,
    ) -> ResolverConfig:
        return ResolverConfig(
            nameservers=("127.0.0.1",),
            port=self.port,
            timeout_s=timeout_s,
            transports=transports,
            prefer_ipv6=prefer_ipv6,
        )

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def queries_since(self, offset: int) -> list[str]:
        """Queries logged after `offset`, as "TYPE name", up to a fresh sentinel query.

        The sentinel makes sure dnsmasq has written every earlier line before we read.
        """
        sentinel = f"sentinel-{time.monotonic_ns()}.{ZONE}"
        query(self.port, sentinel, "TXT")
        deadline = time.monotonic() + 5
        while True:
            with self.log.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode()
            found = re.findall(r"query\[(\w+)\] (\S+) from", text)
            lines = [f"{rdtype} {name}" for rdtype, name in found]
            if f"TXT {sentinel}" in lines:
                return lines[: lines.index(f"TXT {sentinel}")]
            assert time.monotonic() < deadline, f"sentinel never logged:\n{text}"
            time.sleep(0.02)


def query(port: int, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=1)


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (dnsmasq serves both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def closed_port() -> int:
    """A loopback UDP port nothing listens on (a nameserver that never answers)."""
    return free_port()


def start_dnsmasq(rundir: Path) -> Dns:
    port = free_port()
    log = rundir / "log"
    argv = [
        DNSMASQ,
        "--no-daemon",  # foreground; also never forks, never changes user
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        f"--port={port}",
        "--conf-file=/dev/null",
        f"--pid-file={rundir / 'dnsmasq.pid'}",
        f"--log-facility={log}",
        "--log-queries",
        f"--local=/{ZONE}/",  # unknown names in the zone are NXDOMAIN, never forwarded
        *RECORDS,
    ]
    stderr = (rundir / "stderr").open("wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    stderr.close()
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited {proc.returncode}: {stderr_text(rundir)}")
        try:
            if query(port, f"aonly.{ZONE}", "A").rcode() == dns.rcode.NOERROR:
                return Dns(port, log, proc)
        except (OSError, dns.exception.Timeout):
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"dnsmasq never answered: {stderr_text(rundir)}")
        time.sleep(0.05)


def stderr_text(rundir: Path) -> str:
    return (rundir / "stderr").read_text(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dns]:
    if not os.access(DNSMASQ, os.X_OK):
        pytest.skip(f"{DNSMASQ} not installed (package dnsmasq-base)")
    server = start_dnsmasq(tmp_path_factory.mktemp("dnsmasq"))
    try:
        yield server
    finally:
        stop(server.proc)


def strs(targets: list[Target]) -> list[str]:
    return [str(t) for t in targets]


# --- NAPTR → SRV → A/AAAA -----------------------------------------------------------------


async def test_naptr_srv_a_chain_in_naptr_then_srv_order(dnsmasq: Dns) -> None:
    offset = dnsmasq.log_offset()
    targets = await resolve(parse_uri(f"sip:pbx.{ZONE}"), dnsmasq.cfg(), rng=random.Random(1))
    assert strs(targets) == [
        "tls:192.0.2.1:5061",  # NAPTR order 10: SIPS+D2T
        "tls:[2001:db8::1]:5061",
        "tcp:192.0.2.1:5060",  # order 20: SIP+D2T
        "tcp:[2001:db8::1]:5060",
        "udp:192.0.2.1:5060",  # order 30: SIP+D2U, SRV priority 10
        "udp:[2001:db8::1]:5060",
        "udp:192.0.2.2:5062",  # SRV priority 20
    ]
    assert {t.via for t in targets} == {"naptr+srv"}
    assert targets[0].hostname == f"sip-a.{ZONE}"
    assert (targets[-1].hostname, targets[-1].priority, targets[-1].weight) == (
        f"sip-b.{ZONE}",
        20,
        40,
    )
    assert (targets[4].priority, targets[4].weight) == (10, 60)
    queries = dnsmasq.queries_since(offset)
    assert queries[0] == f"NAPTR pbx.{ZONE}"
    assert f"SRV _sips._ws.pbx.{ZONE}" not in queries  # SIPS+D2W ignored
    assert sorted(q for q in queries if q.startswith("SRV")) == [
        f"SRV _sip._tcp.pbx.{ZONE}",
        f"SRV _sip._udp.pbx.{ZONE}",
        f"SRV _sips._tcp.pbx.{ZONE}",
    ]


async def test_naptr_respects_client_transports(dnsmasq: Dns) -> None:
    cfg = dnsmasq.cfg(transports=("udp",), prefer_ipv6=True)
    targets = await resolve(parse_uri(f"sip:pbx.{ZONE}"), cfg, rng=random.Random(1))
    assert strs(targets) == ["udp:[2001:db8::1]:5060", "udp:192.0.2.1:5060", "udp:192.0.2.2:5062"]
    assert [t.via for t in targets] == ["naptr+srv"] * 3


async def test_sips_uri_yields_only_tls(dnsmasq: Dns) -> None:
    targets = await resolve(parse_uri(f"sips:pbx.{ZONE}"), dnsmasq.cfg())
    assert strs(targets) == ["tls:192.0.2.1:5061", "tls:[2001:db8::1]:5061"]
    assert all(t.hostname == f"sip-a.{ZONE}" for t in targets)


# --- SRV without NAPTR, transport parameter -------------------------------------------------


async def test_srv_without_naptr(dnsmasq: Dns) -> None:
    offset = dnsmasq.log_offset()
    targets = await resolve(parse_uri(f"sip:srvonly.{ZONE}"), dnsmasq.cfg())
    assert targets == [Target("tcp", "192.0.2.2", 5070, f"sip-b.{ZONE}", 0, 0, "srv")]
    queries = dnsmasq.queries_since(offset)
    assert queries[0] == f"NAPTR srvonly.{ZONE}"
    assert sorted(q for q in queries if q.startswith("SRV")) == [
        f"SRV _sip._tcp.srvonly.{ZONE}",
        f"SRV _sip._udp.srvonly.{ZONE}",
        f"SRV _sips._tcp.srvonly.{ZONE}",
    ]


async def test_transport_param_selects_that_srv_only(dnsmasq: Dns) -> None:
    offset = dnsmasq.log_offset()
    targets = await resolve(parse_uri(f"sip:pbx.{ZONE};transport=udp"), dnsmasq.cfg())
    assert strs(targets) == ["udp:192.0.2.1:5060", "udp:[2001:db8::1]:5060", "udp:192.0.2.2:5062"]
    assert {t.via for t in targets} == {"srv"}
    queries = dnsmasq.queries_since(offset)
    assert [q for q in queries if not q.startswith(("A ", "AAAA "))] == [
        f"SRV _sip._udp.pbx.{ZONE}"
    ]  # no NAPTR, no other SRV


async def test_sips_transport_tcp_uses_sips_srv(dnsmasq: Dns) -> None:
    targets = await resolve(parse_uri(f"sips:pbx.{ZONE};transport=tcp"), dnsmasq.cfg())
    assert strs(targets) == ["tls:192.0.2.1:5061", "tls:[2001:db8::1]:5061"]
    assert {t.via for t in targets} == {"srv"}


async def test_transport_param_without_srv_falls_back_to_a_on_default_port(dnsmasq: Dns) -> None:
    targets = await resolve(parse_uri(f"sip:aonly.{ZONE};transport=tls"), dnsmasq.cfg())
    assert strs(targets) == ["tls:192.0.2.50:5061", "tls:[2001:db8::50]:5061"]
    assert [t.via for t in targets] == ["a", "aaaa"]


async def test_duplicate_targets_are_returned_once_at_best_priority(dnsmasq: Dns) -> None:
    targets = await resolve(parse_uri(f"sip:dup.{ZONE};transport=udp"), dnsmasq.cfg())
    assert strs(targets) == ["udp:192.0.2.1:5060", "udp:[2001:db8::1]:5060"]
    assert [t.priority for t in targets] == [10, 10]


# --- explicit port, A/AAAA fallback ---------------------------------------------------------


async def test_explicit_port_skips_naptr_and_srv(dnsmasq: Dns) -> None:
    offset = dnsmasq.log_offset()
    targets = await resolve(parse_uri(f"sip:pbx.{ZONE}:5080"), dnsmasq.cfg())
    assert targets == [
        Target("udp", "192.0.2.100", 5080, f"pbx.{ZONE}", via="a+explicit-port"),
    ]
    assert sorted(dnsmasq.queries_since(offset)) == [f"A pbx.{ZONE}", f"AAAA pbx.{ZONE}"]


async def test_a_aaaa_fallback_sip_port_5060(dnsmasq: Dns) -> None:
    targets = await resolve(parse_uri(f"sip:aonly.{ZONE}"), dnsmasq.cfg())
    assert targets == [
        Target("udp", "192.0.2.50", 5060, f"aonly.{ZONE}", via="a"),
        Target("udp", "2001:db8::50", 5060, f"aonly.{ZONE}", via="aaaa"),
    ]
    assert str(targets[1]) == "udp:[2001:db8::50]:5060"


async def test_a_aaaa_fallback_sips_port_5061_ipv6_first(dnsmasq: Dns) -> None:
    targets = await resolve(parse_uri(f"sips:aonly.{ZONE}"), dnsmasq.cfg(prefer_ipv6=True))
    assert strs(targets) == ["tls:[2001:db8::50]:5061", "tls:192.0.2.50:5061"]


# --- WebSocket (RFC 7118): A/AAAA only --------------------------------------------------------

WS = ("udp", "tcp", "tls", "ws", "wss")


async def test_ws_hostname_is_a_aaaa_only_on_port_80(dnsmasq: Dns) -> None:
    offset = dnsmasq.log_offset()
    targets = await resolve(parse_uri(f"sip:pbx.{ZONE};transport=ws"), dnsmasq.cfg(transports=WS))
    assert strs(targets) == ["ws:192.0.2.100:80"]
    # pbx has NAPTR (a SIPS+D2W one too) and SRV records: none is asked for.
    assert sorted(dnsmasq.queries_since(offset)) == [f"A pbx.{ZONE}", f"AAAA pbx.{ZONE}"]


async def test_wss_hostname_explicit_port_and_sips_over_ws(dnsmasq: Dns) -> None:
    cfg = dnsmasq.cfg(transports=WS)
    targets = await resolve(parse_uri(f"sip:aonly.{ZONE}:5065;transport=wss"), cfg)
    assert strs(targets) == ["wss:192.0.2.50:5065", "wss:[2001:db8::50]:5065"]
    assert [t.via for t in targets] == ["a+explicit-port", "aaaa+explicit-port"]
    targets = await resolve(parse_uri(f"sips:aonly.{ZONE};transport=ws"), cfg)
    assert strs(targets) == ["wss:192.0.2.50:443", "wss:[2001:db8::50]:443"]


async def test_ws_nxdomain_says_websocket_is_a_aaaa_only(dnsmasq: Dns) -> None:
    with pytest.raises(ResolveError) as info:
        await resolve(parse_uri(f"sip:nope.{ZONE};transport=ws"), dnsmasq.cfg(transports=WS))
    assert info.value.reason == "nxdomain"
    assert "WebSocket: A/AAAA only, no NAPTR or SRV exists for it" in str(info.value)


# --- no DNS for IP literals ------------------------------------------------------------------


async def test_ip_literal_needs_no_dns() -> None:
    # The nameserver is a closed port: any query would time out after 3 s.
    cfg = ResolverConfig(nameservers=("127.0.0.1",), port=closed_port(), timeout_s=3.0)
    start = time.monotonic()
    v4 = await resolve(parse_uri("sip:192.0.2.7:5070"), cfg)
    v6 = await resolve(parse_uri("sips:[2001:db8::7]"), cfg)
    assert time.monotonic() - start < 0.5
    assert v4 == [Target("udp", "192.0.2.7", 5070, "192.0.2.7", via="literal")]
    assert v6 == [Target("tls", "2001:db8::7", 5061, "2001:db8::7", via="literal")]
    assert str(v6[0]) == "tls:[2001:db8::7]:5061"


# --- failures --------------------------------------------------------------------------------


async def test_nxdomain_is_resolve_error(dnsmasq: Dns) -> None:
    with pytest.raises(ResolveError) as info:
        await resolve(parse_uri(f"sip:nope.{ZONE}"), dnsmasq.cfg())
    assert info.value.reason == "nxdomain"
    assert str(info.value) == f"cannot resolve sip:nope.{ZONE}: A/AAAA nope.{ZONE}: NXDOMAIN"
    assert not info.value.is_local


async def test_srv_dot_target_means_not_available(dnsmasq: Dns) -> None:
    offset = dnsmasq.log_offset()
    with pytest.raises(ResolveError) as info:
        await resolve(parse_uri(f"sip:dead.{ZONE}"), dnsmasq.cfg())
    assert info.value.reason == "not_available"
    assert f"SRV _sip._udp.dead.{ZONE}" in str(info.value)
    assert "service explicitly not available" in str(info.value)
    # "." forbids falling back to the A record dead.sipwatch.test has.
    assert f"A dead.{ZONE}" not in dnsmasq.queries_since(offset)


async def test_unsupported_transport_is_local_error(dnsmasq: Dns) -> None:
    with pytest.raises(ResolveError) as info:
        await resolve(parse_uri(f"sips:pbx.{ZONE}"), dnsmasq.cfg(transports=("udp", "tcp")))
    assert info.value.reason == "no_transport"
    assert info.value.is_local


async def test_dead_nameserver_times_out_within_budget() -> None:
    cfg = ResolverConfig(nameservers=("127.0.0.1",), port=closed_port(), timeout_s=1.0)
    start = time.monotonic()
    with pytest.raises(ResolveError) as info:
        await resolve(parse_uri(f"sip:pbx.{ZONE}"), cfg)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < cfg.timeout_s + 1
    assert info.value.reason == "timeout"
    assert f"NAPTR pbx.{ZONE}" in str(info.value)


async def test_parallel_resolutions_agree_and_leave_no_task_behind(dnsmasq: Dns) -> None:
    results = await asyncio.gather(
        *(resolve(parse_uri(f"sip:pbx.{ZONE}"), dnsmasq.cfg(timeout_s=2.0)) for _ in range(20))
    )
    assert all(len(r) == 7 for r in results)
    assert asyncio.all_tasks() == {asyncio.current_task()}
