"""Issue 19 against real sockets: a hostile peer on the loopback answers with a correct final
response except for one number written in Unicode digits. Through both drivers, over UDP and
TCP, the probe says `malformed` at once (the reply carries our branch, so there is nothing to
wait for), the one-shot CLI exits 3 without a traceback, and bad numbers in URIs given on the
command line or in a config file are refused with the field named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import (
    FlowFactory,
    ProbeContext,
    exchange_result,
    probe_blocking,
    probe_targets,
)
from sipwatch.probes.sip_options import SipOptionsSpec
from sipwatch.probes.sip_register import SipRegisterSpec
from sipwatch.sip.flows import Flow, new_call_id, new_tag, send
from sipwatch.sip.message import build_request
from sipwatch.sip.target import Target
from sipwatch.sip.transaction import Timers, new_branch
from testbed import HostilePeer, free_port, start_hostile

SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
CTX = ProbeContext(timers=Timers(t1_s=0.5))
DEADLINE_S = 2.0
AT_ONCE_S = 0.5  # well before the deadline, and before Timer E's first retransmission

SUP0, SUP1, SUP2, SUP3, SUP6 = "\u2070", "\u00b9", "\u00b2", "\u00b3", "\u2076"
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))

#: issue 19's table (OPTIONS): what the peer changes in a correct 200, and the field the
#: probe's detail must name.
OPTIONS_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "content_length_sup2": (
        {"edits": [("Content-Length: 0", f"Content-Length: {SUP2}")]},
        "Content-Length",
    ),
    "cseq_sup1": ({"edits": [("CSeq: [0-9]+", f"CSeq: {SUP1}")]}, "CSeq"),
    "retry_after_sup3_on_503": (
        {"status": "503 Service Unavailable", "extra": [f"Retry-After: {SUP3}"]},
        "Retry-After",
    ),
    "status_fullwidth_200": ({"status": "200 OK".translate(FULLWIDTH)}, "status code"),
    "rport_5sup0_60": ({"edits": [(";rport=[0-9]+", f";rport=5{SUP0}60")]}, "rport"),
}
#: REGISTER: the binding's lifetime in Unicode digits, as a Contact parameter or the header.
REGISTER_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "contact_expires_sup6_0": ({"edits": [(";expires=60", f";expires={SUP6}0")]}, "expires"),
    "expires_header_sup6_0": (
        {"contact_expires": False, "extra": [f"Expires: {SUP6}0"]},
        "Expires",
    ),
}


class HostileFactory(Protocol):
    def __call__(self, transport: str, **kw: Any) -> HostilePeer: ...


@pytest.fixture
def hostile() -> Iterator[HostileFactory]:
    started: list[HostilePeer] = []

    def start(transport: str, **kw: Any) -> HostilePeer:
        peer = start_hostile(transport, **kw)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()  # raises if its thread died: a broken rig must not pass as a result


def aor(peer: HostilePeer) -> str:
    return peer.uri.replace("sip:", "sip:monitor@", 1)


async def timed(run: Any, spec: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await run(spec, CTX)
    return result, time.monotonic() - started


# --- the pair: a correct answer is ok, the same answer with one Unicode number is malformed --


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_control_the_untouched_answer_is_ok(run, hostile, transport):
    peer = hostile(transport)
    r, _ = await timed(run, SipOptionsSpec(uri=peer.uri, timeout_s=DEADLINE_S))
    assert r.outcome is Outcome.OK and r.status_code == 200, r
    r, _ = await timed(run, SipRegisterSpec(uri=aor(peer), timeout_s=DEADLINE_S))
    assert r.outcome is Outcome.OK and r.detail == "registered and unregistered", r


@pytest.mark.parametrize("row", OPTIONS_ROWS, ids=str)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_unicode_number_in_options_answer_is_malformed_at_once(run, hostile, transport, row):
    change, field = OPTIONS_ROWS[row]
    peer = hostile(transport, **change)
    r, elapsed = await timed(run, SipOptionsSpec(uri=peer.uri, timeout_s=DEADLINE_S))
    assert r.outcome is Outcome.MALFORMED, r
    assert elapsed < AT_ONCE_S, f"{elapsed:.3f} s: waited for the deadline instead"
    assert r.retransmissions == 0 and peer.requests == 1
    assert field in r.detail, r.detail


@pytest.mark.parametrize("row", REGISTER_ROWS, ids=str)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_unicode_expires_in_register_answer_is_malformed_at_once(
    run, hostile, transport, row
):
    change, field = REGISTER_ROWS[row]
    peer = hostile(transport, **change)
    r, elapsed = await timed(run, SipRegisterSpec(uri=aor(peer), timeout_s=DEADLINE_S))
    assert r.outcome is Outcome.MALFORMED, r
    assert elapsed < AT_ONCE_S, f"{elapsed:.3f} s"
    assert r.status_code == 200 and field in r.detail, r
    # The registrar may have stored the binding: it is removed all the same.
    assert peer.requests == 2 and "unregistered" in r.detail, r


def _reads_unicode_expires(spec: SipOptionsSpec) -> FlowFactory:
    """A flow that reads a header of the answer which only a flow reads (Expires)."""

    def factory(target: Target, transport: str, local: tuple[str, int]) -> Flow[ProbeResult]:
        request = build_request(
            "OPTIONS",
            spec.uri,
            transport=transport,
            local=local,
            from_uri="sip:sipwatch@127.0.0.1",
            to_uri=spec.uri,
            call_id=new_call_id(),
            from_tag=new_tag(),
            cseq=1,
            branch=new_branch(),
        )
        exchange = yield from send(request)
        assert exchange.response is not None, exchange
        exchange.response.expires_s()  # raises: the peer wrote it in Unicode digits
        return exchange_result(spec, target, exchange)

    return factory


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_parse_error_raised_inside_a_flow_is_malformed_not_a_crash(
    hostile, transport, driver
):
    peer = hostile(transport, extra=[f"Expires: {SUP6}0"])
    spec = SipOptionsSpec(uri=peer.uri, timeout_s=DEADLINE_S)
    make = _reads_unicode_expires(spec)
    if driver == "asyncio":
        r = await probe_targets(spec, CTX, "OPTIONS", make)
    else:
        r = await asyncio.to_thread(probe_blocking, spec, CTX, "OPTIONS", make)
    assert r is not None and r.outcome is Outcome.MALFORMED, r
    assert "Expires" in r.detail and r.resolved == f"{transport}:127.0.0.1:{peer.port}", r


# --- the one-shot CLI: exit 3, no traceback, at once ----------------------------------------------


def cli(*args: str, timeout_s: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPWATCH_")}
    started = time.monotonic()
    done = subprocess.run(
        [SIPWATCH, *args], capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("driver", [[], ["--force-asyncio"]], ids=["blocking", "asyncio"])
@pytest.mark.parametrize("row", OPTIONS_ROWS, ids=str)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_cli_probe_exits_3_without_traceback(hostile, transport, row, driver):
    peer = hostile(transport, **OPTIONS_ROWS[row][0])
    done, elapsed = cli("probe", peer.uri, "--timeout", "5", *driver)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stdout.startswith("malformed"), done.stdout
    assert elapsed < 2.5, f"{elapsed:.2f} s against a 5 s deadline"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_cli_register_exits_3_without_traceback(hostile, transport):
    peer = hostile(transport, **REGISTER_ROWS["contact_expires_sup6_0"][0])
    done, _ = cli("probe", "--method", "REGISTER", aor(peer), "--timeout", "5")
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode, done.stdout.split()[0]) == (3, "malformed"), done.stdout


def test_check_no_daemon_reports_malformed_not_timeout(hostile, tmp_path):
    peer = hostile("udp", edits=[("Content-Length: 0", f"Content-Length: {SUP2}")])
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'[daemon]\nhttp_port = 0\n\n[[probes]]\nname = "pbx"\nkind = "sip_options"\n'
        f'uri = "{peer.uri}"\ntimeout_s = 3.0\n'
    )
    done, elapsed = cli("check", "--no-daemon", "--json", "--config", str(cfg))
    assert "Traceback" not in done.stderr, done.stderr
    out = json.loads(done.stdout)
    assert [p["outcome"] for p in out["probes"]] == ["malformed"], out
    assert elapsed < 2.5, f"{elapsed:.2f} s against a 3 s deadline"


# --- numbers in URIs on the command line and in config --------------------------------------------


def fullwidth_port() -> str:
    return str(free_port("udp")).translate(FULLWIDTH)


@pytest.mark.parametrize(
    "args",
    [
        lambda: ["probe", f"sip:127.0.0.1:{fullwidth_port()}"],
        lambda: ["probe", f"sip:127.0.0.1:{SUP2}"],
        lambda: ["probe", "--method", "REGISTER", f"sip:m@127.0.0.1:{fullwidth_port()}"],
        lambda: ["probe", "--method", "REGISTER", "sip:m@h", "--registrar", f"sip:h:5{SUP0}60"],
    ],
    ids=["fullwidth", "superscript", "register_aor", "registrar"],
)
def test_cli_uri_with_unicode_port_is_exit_2_naming_the_port(args):
    done, _ = cli(*args(), timeout_s=10)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "invalid argument" in done.stderr and "port" in done.stderr, done.stderr
    assert "invalid literal" not in done.stderr, done.stderr


@pytest.mark.parametrize("port", ["fullwidth", "x", "99999"])
def test_cli_dns_server_port_is_checked(port, closed_udp_port):
    server = f"127.0.0.1:{fullwidth_port() if port == 'fullwidth' else port}"
    done, _ = cli("probe", f"sip:127.0.0.1:{closed_udp_port}", "--dns-server", server)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2 and "--dns-server" in done.stderr, (done.stdout, done.stderr)


def _config(tmp_path: Path, probe: str) -> Path:
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text("[daemon]\nhttp_port = 0\n\n[[probes]]\n" + probe)
    return cfg


#: TOML \\u escapes keep this file's bytes ASCII; the config holds the real characters.
CONFIG_ROWS = {
    "uri": 'kind = "sip_options"\nuri = "sip:127.0.0.1:\\uff15\\uff10\\uff16\\uff10"\n',
    "outbound_proxy": 'kind = "sip_options"\nuri = "sip:a@b"\n'
    'outbound_proxy = "sip:127.0.0.1:5\\u2070\\u0036\\u0030"\n',
    "registrar": 'kind = "sip_register"\nuri = "sip:m@b"\nregistrar = "sip:b:\\u00b2"\n',
    "alive_codes": 'kind = "sip_options"\nuri = "sip:a@b"\n'
    'alive_codes = ["\\uff12\\uff10\\uff10"]\n',
}


@pytest.mark.parametrize("row", CONFIG_ROWS, ids=str)
def test_config_with_unicode_number_is_refused_naming_the_field(tmp_path, row):
    cfg = _config(tmp_path, CONFIG_ROWS[row])
    done, _ = cli("config", str(cfg), timeout_s=10)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.stdout, done.stderr)
    want = "status code" if row == "alive_codes" else "port"
    assert "probes.0" in done.stderr and want in done.stderr, done.stderr
    assert "invalid literal" not in done.stderr, done.stderr


def test_daemon_and_check_refuse_it_with_exit_6(tmp_path):
    cfg = _config(tmp_path, CONFIG_ROWS["uri"])
    for command in (["run"], ["check", "--no-daemon"]):
        done, _ = cli(*command, "--config", str(cfg), timeout_s=10)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 6, (command, done.stdout, done.stderr)
        assert "port" in done.stdout + done.stderr, (command, done.stdout, done.stderr)


@pytest.mark.parametrize("port", ["fullwidth", "x", "99999"])
def test_daemon_http_override_port_is_checked(tmp_path, port):
    cfg = _config(tmp_path, 'kind = "sip_options"\nuri = "sip:127.0.0.1"\n')
    text = fullwidth_port() if port == "fullwidth" else port
    done, _ = cli("run", "--config", str(cfg), "--http", f"127.0.0.1:{text}", timeout_s=10)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 6 and "--http" in done.stdout, (done.stdout, done.stderr)
