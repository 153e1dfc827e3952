"""`sip_options` against real peers: Kamailio, sipp, closed ports, garbage responders."""

from __future__ import annotations

import asyncio
import time

import pytest

from sipwatch.model import Outcome
from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_options import SipOptionsSpec
from sipwatch.sip.resolve import ResolverConfig
from sipwatch.sip.transaction import Timers

pytestmark = pytest.mark.peers
CTX = ProbeContext(timers=Timers(t1_s=0.5))


async def options(run, uri: str, **kw) -> object:
    return await run(SipOptionsSpec(uri=uri, **kw), CTX)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ok_against_kamailio(run, kam, transport):
    r = await options(run, kam.uri(transport))
    assert r.outcome is Outcome.OK, r
    assert (r.status_code, r.transport, r.retransmissions) == (200, transport, 0)
    assert r.rtt_ms is not None and r.rtt_ms < 1000
    assert r.resolved == f"{transport}:127.0.0.1:{getattr(kam, transport + '_port')}"


async def test_ok_over_tls_with_ca_file_reports_expiry(run, kam):
    r = await options(run, kam.uri("tls"), tls_ca_file=str(kam.cert_file))
    assert r.outcome is Outcome.OK, r
    assert r.transport == "tls" and r.tls_not_after
    assert 0 < r.extra["tls_days_left"] <= 3  # the test cert is made for 2 days
    assert "expires in" in r.detail


async def test_tls_error_when_certificate_not_trusted(run, kam):
    r = await options(run, kam.uri("tls"))
    assert r.outcome is Outcome.TLS_ERROR, r
    assert "certificate" in r.detail


async def test_tls_error_when_name_does_not_match(run, kam):
    r = await options(
        run, kam.uri("tls"), tls_ca_file=str(kam.cert_file), tls_server_name="pbx.example.com"
    )
    assert r.outcome is Outcome.TLS_ERROR, r


async def test_tls_insecure_skips_verification(run, kam):
    r = await options(run, kam.uri("tls"), tls_verify=False)
    assert r.outcome is Outcome.OK, r


async def test_bad_status_and_configurable_alive_codes(run, kam):
    kam.set_fault("OPTIONS", code=404, reason="Not Here")
    r = await options(run, kam.uri("udp"))
    assert (r.outcome, r.status_code, r.reason) == (Outcome.BAD_STATUS, 404, "Not Here")
    r = await options(run, kam.uri("udp"), alive_codes=("2xx", "404"))
    assert r.outcome is Outcome.OK


async def test_503_with_retry_after_is_draining_without_is_bad_status(run, kam):
    kam.set_fault("OPTIONS", code=503, reason="Maintenance", retry_after_s=30)
    r = await options(run, kam.uri("udp"))
    assert (r.outcome, r.retry_after_s) == (Outcome.DRAINING, 30)
    kam.set_fault("OPTIONS", code=503, reason="Overloaded")
    r = await options(run, kam.uri("udp"))
    assert (r.outcome, r.status_code) == (Outcome.BAD_STATUS, 503)


async def test_draining_from_sipp(run, sipp_uas):
    peer = sipp_uas("503", transport="udp")
    r = await options(run, peer.uri())
    assert r.outcome is Outcome.DRAINING and r.status_code == 503


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ok_from_sipp(run, sipp_uas, transport):
    peer = sipp_uas("200", transport=transport)
    r = await options(run, peer.uri())
    assert r.outcome is Outcome.OK and r.transport == transport


async def test_timeout_udp_retransmits_on_rfc_schedule(run, sipp_uas):
    peer = sipp_uas("silent", transport="udp")
    started = time.monotonic()
    r = await options(run, peer.uri(), timeout_s=2.0)
    elapsed = time.monotonic() - started
    assert r.outcome is Outcome.TIMEOUT
    # Timer E at 0.5 s and 1.5 s, then the 2 s deadline (Timer F capped by it).
    assert r.retransmissions == 2
    assert 1.9 <= elapsed < 2.6


async def test_timeout_tcp_never_retransmits(run, kam):
    kam.set_fault("OPTIONS", drop=True)
    r = await options(run, kam.uri("tcp"), timeout_s=1.5)
    assert r.outcome is Outcome.TIMEOUT and r.retransmissions == 0


async def test_delay_below_deadline_is_ok_above_is_timeout(run, kam):
    kam.set_fault("OPTIONS", delay_ms=300)
    r = await options(run, kam.uri("tcp"), timeout_s=2.0)
    assert r.outcome is Outcome.OK and r.rtt_ms >= 290
    r = await options(run, kam.uri("tcp"), timeout_s=0.2)
    assert r.outcome is Outcome.TIMEOUT


async def test_slow_udp_answer_after_a_retransmission_is_ok(run, kam):
    """Timer E fires at 0.5 s; Kamailio's transaction absorbs the retransmission and the
    200 arrives at 0.7 s: one retransmission, RTT measured from the first send."""
    kam.set_fault("OPTIONS", delay_ms=700)
    r = await options(run, kam.uri("udp"), timeout_s=2.0)
    assert r.outcome is Outcome.OK
    assert r.retransmissions == 1
    assert r.rtt_ms >= 690


async def test_refused_udp_is_reported_at_once(run, closed_udp_port):
    started = time.monotonic()
    r = await options(run, f"sip:127.0.0.1:{closed_udp_port}", timeout_s=2.0)
    assert r.outcome is Outcome.REFUSED, r
    assert time.monotonic() - started < 0.5  # ICMP, not a timeout


async def test_refused_tcp_is_reported_at_once(run, closed_tcp_port):
    started = time.monotonic()
    r = await options(run, f"sip:127.0.0.1:{closed_tcp_port};transport=tcp", timeout_s=2.0)
    assert r.outcome is Outcome.REFUSED
    assert time.monotonic() - started < 0.5


class _Garbage(asyncio.DatagramProtocol):
    """A UDP peer that answers every datagram with non-SIP bytes (optionally echoing the
    branch, as a broken stack would)."""

    def __init__(self, echo_branch: bool) -> None:
        self.echo_branch = echo_branch

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = b"SIP/2.0 2OO OK\r\nthis is not sip\r\n\r\n"
        if self.echo_branch:
            start = data.index(b"branch=")
            reply += data[start : data.index(b";", start)]
        self.transport.sendto(reply, addr)


@pytest.mark.parametrize("echo", [True, False])
async def test_malformed_reply_is_malformed_not_timeout(run, echo):
    loop = asyncio.get_running_loop()
    tx, _ = await loop.create_datagram_endpoint(lambda: _Garbage(echo), local_addr=("127.0.0.1", 0))
    port = tx.get_extra_info("sockname")[1]
    try:
        started = time.monotonic()
        r = await options(run, f"sip:127.0.0.1:{port}", timeout_s=1.0)
    finally:
        tx.close()
    assert r.outcome is Outcome.MALFORMED, r
    if echo:  # the branch tells which transaction: reported at once
        assert time.monotonic() - started < 0.5


#: A UDP peer in a process of its own (no GIL shared with the client, so it really outruns
#: the parser): prints its port, waits (bounded) for one request, then sends non-SIP
#: datagrams back as fast as it can for 4 s, and exits.
_FLOODER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
s.settimeout(10)
_, addr = s.recvfrom(65536)
until = time.monotonic() + 4.0
while time.monotonic() < until:
    try:
        s.sendto(b"this is not sip either\\r\\n\\r\\n", addr)
    except OSError:
        pass
"""


async def test_a_flood_of_garbage_datagrams_does_not_hold_the_deadline(run):
    """The blocking driver used to read for as long as the socket stayed readable: a peer
    flooding garbage held Timer F (and the deadline) until the flood ended."""
    import contextlib
    import subprocess
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FLOODER, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 10))
        started = time.monotonic()
        r = await options(run, f"sip:127.0.0.1:{port}", timeout_s=1.0)
        elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # by its PID; it would end by itself 4 s after the request
        await asyncio.wait_for(proc.wait(), 5)
    assert r.outcome is Outcome.MALFORMED, r
    assert elapsed < 1.8, f"{elapsed:.2f} s: the flood lasts 4 s, the deadline is 1 s"


async def test_malformed_on_tcp_stream(run):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        r = await options(run, f"sip:127.0.0.1:{port};transport=tcp", timeout_s=1.0)
    assert r.outcome is Outcome.MALFORMED, r


async def test_dns_error_when_no_nameserver_answers(closed_udp_port):
    ctx = ProbeContext(
        resolver=ResolverConfig(nameservers=("127.0.0.1",), port=closed_udp_port, timeout_s=0.5)
    )
    r = await run_probe(SipOptionsSpec(uri="sip:pbx.sipwatch.test", timeout_s=1.0), ctx)
    assert r.outcome is Outcome.DNS_ERROR and r.resolved == ""


async def test_local_error_when_password_file_missing(run, kam, tmp_path):
    r = await options(run, kam.uri("udp"), user="monitor", password_file=str(tmp_path / "missing"))
    assert r.outcome is Outcome.LOCAL_ERROR
    assert "cannot read password file" in r.detail


async def test_a_thousand_concurrent_probes_all_answered(kam):
    """No probe is lost when many share the event loop (aiovoip lost 99 of 1000)."""
    spec = SipOptionsSpec(uri=kam.uri("udp"), timeout_s=5.0)
    results = await asyncio.gather(*(run_probe(spec, CTX) for _ in range(1000)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.OK) == 1000, {o: outcomes.count(o) for o in set(outcomes)}


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_no_socket_left_open_by_probes(run, kam, transport):
    """Each probe closes what it opened, whatever the outcome."""
    import os

    before = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        await options(run, kam.uri(transport), tls_verify=False)
        await options(run, kam.uri(transport))  # tls_error for TLS: not trusted
    assert len(os.listdir("/proc/self/fd")) <= before + 2
