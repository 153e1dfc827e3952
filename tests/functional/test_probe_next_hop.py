"""The SIP layer's next-hop options against the session Kamailio, through both drivers:
`source_address` (bind first: the VIP as source), `outbound_proxy` (send to a proxy with a
Route header) and `sip_register`'s `registrar` (the REGISTER goes there, not to the AOR's
domain). Loopback only: 127.0.0.0/8 is all local, so 127.0.0.2 is a second source address."""

from __future__ import annotations

import pytest

from sipwatch.model import Outcome
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_options import SipOptionsSpec
from sipwatch.probes.sip_register import SipRegisterSpec
from sipwatch.sip.transaction import Timers

pytestmark = pytest.mark.peers
CTX = ProbeContext(timers=Timers(t1_s=0.5))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_source_address_is_bound(run, kam, transport) -> None:
    r = await run(
        SipOptionsSpec(uri=kam.uri(transport), source_address="127.0.0.2", timeout_s=1.0), CTX
    )
    assert r.outcome is Outcome.OK, r
    # The request left from 127.0.0.2 and Kamailio's answer came back to that socket.
    assert r.extra["source"].startswith("127.0.0.2:")
    assert r.resolved == f"{transport}:127.0.0.1:{kam.port(transport)}"


async def test_source_address_not_local_is_a_local_error(run, kam) -> None:
    # bind() fails with EADDRNOTAVAIL before anything is sent.
    r = await run(SipOptionsSpec(uri=kam.uri("udp"), source_address="10.99.99.99"), CTX)
    assert r.outcome is Outcome.LOCAL_ERROR, r
    assert "EADDRNOTAVAIL" in r.detail


async def test_outbound_proxy_receives_the_request(run, kam) -> None:
    # The Request-URI names a host that does not exist; the request goes to the proxy
    # (Kamailio), which answers OPTIONS itself.
    spec = SipOptionsSpec(uri="sip:ivr@ivr.invalid", outbound_proxy=kam.uri("udp"), timeout_s=1.0)
    assert spec.route_headers() == (("Route", f"<{kam.uri('udp')};lr>"),)
    r = await run(spec, CTX)
    assert (r.outcome, r.status_code) == (Outcome.OK, 200), r
    assert r.resolved == f"udp:127.0.0.1:{kam.udp_port}"


async def test_register_goes_to_the_registrar(run, kam, tmp_path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("monitor-secret-1\n")
    spec = SipRegisterSpec(
        uri="sip:monitor@sipwatch.invalid",  # no DNS for this domain: only the registrar works
        registrar=kam.uri("udp", user="x").replace("sip:x@", "sip:"),
        password_file=str(pw),
        timeout_s=2.0,
    )
    r = await run(spec, CTX)
    assert r.outcome is Outcome.OK, r
    assert r.resolved == f"udp:127.0.0.1:{kam.udp_port}"
