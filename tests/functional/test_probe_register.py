"""`sip_register` against a real Kamailio registrar with digest auth (with and without qop)."""

from __future__ import annotations

import subprocess

import pytest

from sipwatch.model import Outcome
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_register import SipRegisterSpec

pytestmark = pytest.mark.peers
CTX = ProbeContext()


@pytest.fixture
def pwfile(tmp_path):
    def make(secret: str):
        path = tmp_path / "pw"
        path.write_text(secret + "\n")
        path.chmod(0o600)
        return str(path)

    return make


def bound(peer, user: str = "monitor") -> bool:
    """Does Kamailio's usrloc hold a binding for `user`? (asks the registrar itself)"""
    try:
        out = peer.kamcmd("ul.lookup", "location", user)
    except (RuntimeError, subprocess.CalledProcessError):
        return False
    return "Contact" in out or "Address" in out


async def register(run, uri: str, **kw):
    return await run(SipRegisterSpec(uri=uri, **kw), CTX)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_with_qop_then_unregister(run, kam, pwfile, transport):
    r = await register(run, kam.uri(transport), password_file=pwfile("monitor-secret-1"))
    assert r.outcome is Outcome.OK, r
    assert r.status_code == 200 and r.detail == "registered and unregistered"
    assert not bound(kam), "the unregister (Expires: 0) must remove the binding"


async def test_register_without_qop(run, kamailio_noqop, pwfile):
    r = await register(run, kamailio_noqop.uri("udp"), password_file=pwfile("monitor-secret-1"))
    assert r.outcome is Outcome.OK, r


async def test_keep_registration_leaves_the_binding(run, kam, pwfile):
    r = await register(
        run,
        kam.uri("udp"),
        password_file=pwfile("monitor-secret-1"),
        keep_registration=True,
        expires_s=30,
    )
    try:
        assert r.outcome is Outcome.OK and "kept" in r.detail
        assert bound(kam)
    finally:
        await register(
            run, kam.uri("udp"), password_file=pwfile("monitor-secret-1"), expires_s=1
        )  # registers then unregisters: cleans up


async def test_password_from_env(run, kam, monkeypatch):
    monkeypatch.setenv("SIPWATCH_TEST_PW", "monitor-secret-1")
    r = await register(run, kam.uri("udp"), password_env="SIPWATCH_TEST_PW")
    assert r.outcome is Outcome.OK, r


async def test_wrong_password_is_bad_status_credentials_rejected(run, kam, pwfile):
    r = await register(run, kam.uri("udp"), password_file=pwfile("wrong"))
    assert r.outcome is Outcome.BAD_STATUS and r.status_code == 401
    assert r.detail == "credentials rejected"
    assert "wrong" not in repr(r) and "wrong" not in str(r.to_dict())


async def test_no_credentials_is_bad_status(run, kam):
    r = await register(run, kam.uri("udp"))
    assert r.outcome is Outcome.BAD_STATUS and r.status_code == 401
    assert "no credentials" in r.detail


async def test_register_draining(run, kam, pwfile):
    kam.set_fault("REGISTER", code=503, reason="Maintenance", retry_after_s=60)
    r = await register(run, kam.uri("udp"), password_file=pwfile("monitor-secret-1"))
    assert r.outcome is Outcome.DRAINING and r.retry_after_s == 60


async def test_register_timeout(run, kam, pwfile):
    kam.set_fault("REGISTER", drop=True)
    r = await register(run, kam.uri("udp"), password_file=pwfile("monitor-secret-1"), timeout_s=1)
    assert r.outcome is Outcome.TIMEOUT and r.retransmissions == 1


async def test_register_refused(run, closed_tcp_port, pwfile):
    r = await register(
        run, f"sip:monitor@127.0.0.1:{closed_tcp_port};transport=tcp", password_file=pwfile("x")
    )
    assert r.outcome is Outcome.REFUSED


async def test_register_local_error_when_env_missing(run, kam, monkeypatch):
    monkeypatch.delenv("SIPWATCH_NOPE", raising=False)
    r = await register(run, kam.uri("udp"), password_env="SIPWATCH_NOPE")
    assert r.outcome is Outcome.LOCAL_ERROR and "SIPWATCH_NOPE" in r.detail


def test_aor_without_user_is_refused_at_config_time():
    with pytest.raises(ValueError, match="user part"):
        SipRegisterSpec(uri="sip:127.0.0.1")
