"""SIP over WebSocket (RFC 7118): OPTIONS and REGISTER over WS and WSS against Kamailio's
websocket module, its fault switches (a refused upgrade, `ws.disable`, `ws.close`), and
hostile WebSocket peers of the rig (testbed.rawws) for what Kamailio cannot be made to do.
Every probe runs through both drivers (`run`: asyncio and blocking)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipwatch.model import Outcome
from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_options import SipOptionsSpec
from sipwatch.probes.sip_register import SipRegisterSpec
from sipwatch.sip.transaction import Timers
from testbed.rawws import HostileWsPeer, start_hostile_ws_peer

pytestmark = pytest.mark.peers
CTX = ProbeContext(timers=Timers(t1_s=0.5))
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")


@pytest.fixture
def hostile() -> Iterator[object]:
    """hostile("garbage") -> a HostileWsPeer on a free loopback port, stopped at teardown."""
    started: list[HostileWsPeer] = []

    def start(behaviour: str) -> HostileWsPeer:
        peer = start_hostile_ws_peer(behaviour)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()


@pytest.fixture
def pwfile(tmp_path: Path) -> str:
    path = tmp_path / "pw"
    path.write_text("monitor-secret-1\n")
    path.chmod(0o600)
    return str(path)


def tls(kam, transport: str) -> dict[str, str]:
    return {"tls_ca_file": str(kam.cert_file)} if transport == "wss" else {}


async def options(run, uri: str, **kw):
    return await run(SipOptionsSpec(uri=uri, **kw), CTX)


# -- against Kamailio ---------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["ws", "wss"])
async def test_options_ok_over_websocket(run, kam, transport):
    r = await options(run, kam.uri(transport), **tls(kam, transport))
    assert r.outcome is Outcome.OK, r
    assert (r.status_code, r.transport, r.retransmissions) == (200, transport, 0)
    assert r.resolved == f"{transport}:127.0.0.1:{kam.port(transport)}"
    assert r.rtt_ms is not None and r.rtt_ms < 1000


async def test_wss_reports_certificate_expiry_as_tls_does(run, kam):
    r = await options(run, kam.uri("wss"), tls_ca_file=str(kam.cert_file))
    assert r.outcome is Outcome.OK, r
    assert r.tls_not_after
    assert 0 < r.extra["tls_days_left"] <= 3  # the rig's cert is made for 2 days
    assert "expires in" in r.detail


async def test_wss_untrusted_or_wrong_name_is_tls_error_insecure_is_ok(run, kam):
    r = await options(run, kam.uri("wss"))
    assert r.outcome is Outcome.TLS_ERROR and "certificate" in r.detail, r
    r = await options(
        run, kam.uri("wss"), tls_ca_file=str(kam.cert_file), tls_server_name="pbx.example.com"
    )
    assert r.outcome is Outcome.TLS_ERROR, r
    r = await options(run, kam.uri("wss"), tls_verify=False)
    assert r.outcome is Outcome.OK, r


@pytest.mark.parametrize("transport", ["ws", "wss"])
async def test_register_over_websocket_then_unregister(run, kam, pwfile, transport):
    r = await run(
        SipRegisterSpec(uri=kam.uri(transport), password_file=pwfile, **tls(kam, transport)), CTX
    )
    assert r.outcome is Outcome.OK, r
    assert r.detail.startswith("registered and unregistered")
    # RFC 7118 §5.2: the Contact host is a .invalid name, transport=ws over WSS too.
    assert re.fullmatch(r"sip:monitor@[0-9a-f]{12}\.invalid;transport=ws", r.extra["contact"])
    out = kam.kamcmd("ul.dump")
    assert ".invalid" not in out, "the unregister must remove the WebSocket binding"


async def test_transport_override_and_sips_over_ws_mean_wss(run, kam):
    plain = f"sip:monitor@127.0.0.1:{kam.port('ws')}"
    r = await options(run, plain, transport="ws")
    assert (r.outcome, r.transport) == (Outcome.OK, "ws"), r
    secure = f"sips:monitor@127.0.0.1:{kam.port('wss')};transport=ws"  # RFC 7118 §5.2
    r = await options(run, secure, tls_ca_file=str(kam.cert_file))
    assert (r.outcome, r.transport) == (Outcome.OK, "wss"), r


@pytest.mark.parametrize(
    ("code", "reason"), [(403, "Forbidden"), (404, "Not Found"), (503, "Down")]
)
async def test_refused_upgrade_is_bad_status_with_the_http_status(run, kam, code, reason):
    kam.set_ws_fault(reject=code, reason=reason)
    r = await options(run, kam.uri("ws"))
    assert r.outcome is Outcome.BAD_STATUS, r
    assert f"HTTP {code} {reason}" in r.detail
    assert r.extra["http_status"] == code and r.status_code is None  # not a SIP status
    r = await options(run, kam.uri("wss"), tls_ca_file=str(kam.cert_file))
    assert (r.outcome, r.extra.get("http_status")) == (Outcome.BAD_STATUS, code), r
    r = await options(run, kam.uri("udp"))
    assert r.outcome is Outcome.OK, "the fault breaks WebSocket alone"
    kam.set_ws_fault(reject=None)
    r = await options(run, kam.uri("ws"))
    assert r.outcome is Outcome.OK, r


async def test_ws_disable_breaks_websocket_alone(run, kam):
    kam.kamcmd("ws.disable")
    try:
        ws = await options(run, kam.uri("ws"))
        udp = await options(run, kam.uri("udp"))
        tcp = await options(run, kam.uri("tcp"))
    finally:
        kam.kamcmd("ws.enable")
    assert ws.outcome is Outcome.BAD_STATUS and ws.extra["http_status"] == 503, ws
    assert (udp.outcome, tcp.outcome) == (Outcome.OK, Outcome.OK)
    r = await options(run, kam.uri("ws"))
    assert r.outcome is Outcome.OK, r


@pytest.mark.parametrize("transport", ["ws", "wss"])
async def test_ws_close_mid_transaction_is_refused_at_once_udp_keeps_answering(run, kam, transport):
    kam.set_fault("OPTIONS", delay_ms=2000)
    started = time.monotonic()
    task = asyncio.create_task(
        options(run, kam.uri(transport), timeout_s=4.0, **tls(kam, transport))
    )
    closed = 0
    for _ in range(100):  # bounded: close what is open until the probe has its answer
        await asyncio.sleep(0.02)
        closed += await asyncio.to_thread(kam.ws_close_all)
        if task.done():
            break
    r = await task
    assert closed >= 1
    assert r.outcome is Outcome.REFUSED, r
    assert "WebSocket closed by the peer (1000" in r.detail
    assert time.monotonic() - started < 1.8, "reported at the close, not at the delayed 200"
    kam.clear_faults()
    r = await options(run, kam.uri("udp"))
    assert r.outcome is Outcome.OK


async def test_refused_at_once_when_nothing_listens(run, closed_tcp_port):
    started = time.monotonic()
    r = await options(run, f"sip:127.0.0.1:{closed_tcp_port};transport=ws", timeout_s=2.0)
    assert r.outcome is Outcome.REFUSED, r
    assert time.monotonic() - started < 0.5


async def test_upgrade_on_the_sip_tcp_port_is_refused_by_kamailio(run, kam):
    """Kamailio's xhttp answers an HTTP GET on its SIP TCP port 403 (the rig's config)."""
    r = await options(run, f"sip:127.0.0.1:{kam.port('tcp')};transport=ws")
    assert (r.outcome, r.extra.get("http_status")) == (Outcome.BAD_STATUS, 403), r


async def test_two_hundred_concurrent_wss_probes_all_answered(kam):
    spec = SipOptionsSpec(uri=kam.uri("wss"), tls_ca_file=str(kam.cert_file), timeout_s=10.0)
    results = await asyncio.gather(*(run_probe(spec, CTX) for _ in range(200)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.OK) == 200, {o: outcomes.count(o) for o in set(outcomes)}


@pytest.mark.parametrize("transport", ["ws", "wss"])
async def test_no_socket_left_open_by_websocket_probes(run, kam, transport):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        await options(run, kam.uri(transport), tls_verify=False)
        await options(run, kam.uri(transport))  # wss: tls_error, not trusted
    kam.set_ws_fault(reject=403)
    for _ in range(5):
        await options(run, kam.uri(transport), tls_verify=False)
    assert len(os.listdir("/proc/self/fd")) <= before + 2


# -- hostile WebSocket peers ----------------------------------------------------------------------
async def test_control_peer_answers_and_sees_rfc7118_requests(run, hostile):
    """The rig's correct WS peer: the request is what RFC 7118 asks for."""
    peer = hostile("ok")
    r = await options(run, peer.uri(), ws_path="/sip/ws", ws_origin="https://portal.example")
    assert r.outcome is Outcome.OK, r
    upgrade = peer.last_upgrade.decode()
    assert upgrade.startswith("GET /sip/ws HTTP/1.1\r\n")
    assert re.search(r"(?im)^Sec-WebSocket-Protocol: sip\r?$", upgrade)
    assert re.search(r"(?im)^Origin: https://portal\.example\r?$", upgrade)
    assert re.search(rf"(?im)^Host: 127\.0\.0\.1:{peer.port}\r?$", upgrade)
    request = peer.last_request.decode()
    assert re.search(
        r"(?m)^Via: SIP/2\.0/WS [0-9a-f]{12}\.invalid;branch=z9hG4bK\w+;rport", request
    )


async def test_binary_fragmented_answer_is_accepted(run, hostile):
    r = await options(run, hostile("binary_ok").uri())
    assert r.outcome is Outcome.OK, r


async def test_101_without_sip_subprotocol_is_malformed(run, hostile):
    peer = hostile("no_subprotocol")
    started = time.monotonic()
    r = await options(run, peer.uri())
    assert r.outcome is Outcome.MALFORMED, r
    assert "Sec-WebSocket-Protocol: sip" in r.detail
    assert peer.requests == 0, "no SIP is sent on a connection that did not agree to SIP"
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("echo", [False, True])
async def test_frame_that_is_not_sip_is_malformed(run, hostile, echo):
    peer = hostile("garbage_branch" if echo else "garbage")
    started = time.monotonic()
    r = await options(run, peer.uri(), timeout_s=1.0)
    assert r.outcome is Outcome.MALFORMED, r
    if echo:  # our branch in the garbage: that transaction fails at once
        assert time.monotonic() - started < 0.5


async def test_a_flood_of_non_sip_frames_is_malformed_at_once(run, hostile):
    """A stream of non-SIP frames is not a SIP server: reported without waiting for the
    deadline, and without parsing the whole flood (which held the event loop for 0.5 s per
    read before the cap)."""
    started = time.monotonic()
    r = await options(run, hostile("garbage_flood").uri(), timeout_s=2.0)
    assert r.outcome is Outcome.MALFORMED, r
    assert "16 WebSocket messages that are not SIP" in r.detail
    assert time.monotonic() - started < 0.5


async def test_response_with_a_branch_not_ours_is_ignored(run, hostile):
    peer = hostile("spoofed_branch")
    r = await options(run, peer.uri(), timeout_s=1.0)
    assert r.outcome is Outcome.TIMEOUT, r
    assert peer.requests == 1 and r.retransmissions == 0


async def test_plain_http_200_instead_of_101_is_bad_status(run, hostile):
    r = await options(run, hostile("http_200").uri())
    assert r.outcome is Outcome.BAD_STATUS, r
    assert "HTTP 200 OK" in r.detail and r.extra["http_status"] == 200


async def test_close_right_after_the_handshake_is_refused(run, hostile):
    started = time.monotonic()
    r = await options(run, hostile("close_after_handshake").uri(), timeout_s=2.0)
    assert r.outcome is Outcome.REFUSED, r
    assert "closed by the peer" in r.detail
    assert time.monotonic() - started < 0.5


# -- the CLI, end to end ------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIPWATCH, "probe", *args], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture(params=["blocking", "asyncio"])
def cli_driver(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return () if request.param == "blocking" else ("--force-asyncio",)


def test_cli_ws_to_a_closed_port_is_refused_not_a_traceback(closed_tcp_port, cli_driver):
    """It used to end in `ValueError: unsupported transport 'ws'`."""
    done = cli(f"sip:x@127.0.0.1:{closed_tcp_port};transport=ws", *cli_driver)
    assert done.returncode == 3, done
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
    assert done.stdout.startswith("refused"), done.stdout


def test_cli_ws_and_wss_ok_exit_0(kam, cli_driver):
    import json

    done = cli(kam.uri("ws"), "--json", *cli_driver)
    assert done.returncode == 0, done
    assert json.loads(done.stdout)["outcome"] == "ok"
    done = cli(kam.uri("wss"), "--ca-file", str(kam.cert_file), "--json", *cli_driver)
    assert done.returncode == 0, done
    out = json.loads(done.stdout)
    assert (out["outcome"], out["transport"]) == ("ok", "wss") and out["tls_not_after"]
    done = cli(f"sip:monitor@127.0.0.1:{kam.port('ws')}", "--transport", "ws", *cli_driver)
    assert done.returncode == 0, done


def test_cli_exit_codes_refused_upgrade_1_no_subprotocol_3(kam, hostile, cli_driver):
    kam.set_ws_fault(reject=403)
    done = cli(kam.uri("ws"), *cli_driver)
    assert done.returncode == 1 and done.stdout.startswith("bad_status"), done
    assert "HTTP 403" in done.stdout
    done = cli(hostile("no_subprotocol").uri(), *cli_driver)
    assert done.returncode == 3 and done.stdout.startswith("malformed"), done


def test_cli_ws_path_must_be_a_path(cli_driver):
    done = cli("sip:127.0.0.1:5066;transport=ws", "--ws-path", "ws", *cli_driver)
    assert done.returncode == 2 and "ws_path" in done.stderr, done
