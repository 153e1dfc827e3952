"""The test rig itself (testbed) behaves as documented, seen through raw sockets.

Nothing from sipwatch.sip is used here: these tests are what lets the functional tests of the
SIP client trust their peers.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import KamailioPeer, SippPeer, free_port, rawws, start_kamailio
from testbed.rawsip import build_request, header, register, send_request

pytestmark = pytest.mark.peers
SippFactory = Callable[..., SippPeer]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_answered_200_with_allow(kam: KamailioPeer, transport: str) -> None:
    ex = send_request(kam.host, kam.port(transport), transport=transport)
    assert ex.status == 200, ex
    assert ex.response is not None
    assert "OPTIONS" in (header(ex.response, "Allow") or "")
    assert header(ex.response, "Accept") == "application/sdp"


def test_tls_cert_verifies_as_ca_file_for_ip_and_name(kam: KamailioPeer) -> None:
    assert kam.cert_file is not None and kam.tls_port is not None
    for name in ("127.0.0.1", "localhost"):
        ex = send_request(
            kam.host, kam.tls_port, transport="tls", ca_file=kam.cert_file, server_hostname=name
        )
        assert ex.status == 200, (name, ex)


def test_uris(kam: KamailioPeer) -> None:
    assert kam.uri() == f"sip:monitor@127.0.0.1:{kam.udp_port}"
    assert kam.uri("tcp", user="alice") == f"sip:alice@127.0.0.1:{kam.tcp_port};transport=tcp"
    assert kam.uri("tls") == f"sip:monitor@127.0.0.1:{kam.tls_port};transport=tls"
    assert kam.uri("sips") == f"sips:monitor@127.0.0.1:{kam.tls_port}"
    assert kam.uri("ws") == f"sip:monitor@127.0.0.1:{kam.ws_port};transport=ws"
    assert kam.uri("wss") == f"sip:monitor@127.0.0.1:{kam.wss_port};transport=wss"
    assert len({kam.udp_port, kam.tls_port, kam.ws_port, kam.wss_port}) == 4


@pytest.mark.parametrize("secure", [False, True])
def test_websocket_options_answered_200(kam: KamailioPeer, secure: bool) -> None:
    port = kam.port("wss" if secure else "ws")
    status, ex = rawws.send_request(kam.host, port, secure=secure, ca_file=kam.cert_file)
    assert status == 101 and ex is not None and ex.status == 200, ex
    assert ex.response is not None and "OPTIONS" in (header(ex.response, "Allow") or "")


def test_websocket_upgrade_without_sip_subprotocol_is_refused(kam: KamailioPeer) -> None:
    status, _ = rawws.send_request(kam.host, kam.port("ws"), subprotocols=())
    assert status == 400


def test_websocket_faults_reject_and_disable(kam: KamailioPeer) -> None:
    kam.set_ws_fault(reject=404, reason="No WebSocket Here")
    assert rawws.send_request(kam.host, kam.port("ws"))[0] == 404
    assert send_request(kam.host, kam.udp_port).status == 200
    kam.set_ws_fault(reject=None)
    assert rawws.send_request(kam.host, kam.port("ws"))[0] == 101
    kam.kamcmd("ws.disable")
    try:
        assert rawws.send_request(kam.host, kam.port("ws"))[0] == 503
        assert send_request(kam.host, kam.udp_port).status == 200
    finally:
        kam.kamcmd("ws.enable")
    assert rawws.send_request(kam.host, kam.port("ws"))[0] == 101


@pytest.mark.parametrize("behaviour", sorted(rawws.BEHAVIOURS))
def test_hostile_ws_peers_do_what_they_say(behaviour: str) -> None:
    with rawws.start_hostile_ws_peer(behaviour) as peer:
        status, ex = rawws.send_request(peer.host, peer.port, timeout_s=0.5)
    if behaviour == "http_200":
        assert (status, ex) == (200, None)
        return
    assert status == 101 and ex is not None
    code = ex.status
    if behaviour in ("ok", "no_subprotocol", "binary_ok"):
        assert code == 200, ex
    elif behaviour == "spoofed_branch":
        assert ex.response is not None and code == 200  # the oracle does not match branches
        assert header(ex.request, "Via") != header(ex.response, "Via")
    else:  # garbage, garbage_branch: not SIP; close_after_handshake: nothing
        assert code is None, ex


def test_repr_hides_passwords(kam: KamailioPeer) -> None:
    text = repr(kam)
    assert "monitor" in text
    assert kam.users  # the passwords are there, just not in the repr
    assert not any(password in text for password in kam.users.values())


@pytest.mark.parametrize(("method", "transport"), [("OPTIONS", "udp"), ("REGISTER", "tcp")])
def test_fault_code_with_retry_after(kam: KamailioPeer, method: str, transport: str) -> None:
    kam.set_fault(method, code=503, reason="Service Unavailable", retry_after_s=30)
    ex = send_request(kam.host, kam.port(transport), method=method, transport=transport)
    assert ex.response is not None
    assert ex.response.startswith(b"SIP/2.0 503 Service Unavailable\r\n")
    assert header(ex.response, "Retry-After") == "30"

    kam.set_fault(method, code=486)  # replaces the switches of that method
    ex = send_request(kam.host, kam.port(transport), method=method, transport=transport)
    assert ex.response is not None and ex.response.startswith(b"SIP/2.0 486 Fault\r\n")
    assert header(ex.response, "Retry-After") is None

    kam.clear_faults()
    ex = send_request(kam.host, kam.port(transport), method=method, transport=transport)
    assert ex.status == (200 if method == "OPTIONS" else 401)


def test_fault_for_one_method_leaves_the_other_alone(kam: KamailioPeer) -> None:
    kam.set_fault("REGISTER", drop=True)
    assert send_request(kam.host, kam.udp_port).status == 200


def test_drop_gives_no_reply_within_1s(kam: KamailioPeer) -> None:
    kam.set_fault("OPTIONS", drop=True)
    ex = send_request(kam.host, kam.udp_port, timeout_s=1.0)
    assert ex.response is None
    assert ex.elapsed_s >= 1.0


def test_delay_300ms(kam: KamailioPeer) -> None:
    kam.set_fault("OPTIONS", delay_ms=300)
    ex = send_request(kam.host, kam.udp_port, timeout_s=2.0)
    assert ex.status == 200
    assert 0.3 <= ex.elapsed_s < 1.0


def test_delay_applies_to_a_faulted_reply_too(kam: KamailioPeer) -> None:
    kam.set_fault("OPTIONS", delay_ms=200, code=500, reason="Server Internal Error")
    ex = send_request(kam.host, kam.tcp_port, transport="tcp", timeout_s=2.0)
    assert ex.status == 500
    assert ex.elapsed_s >= 0.2


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_garbage(kam: KamailioPeer, transport: str) -> None:
    kam.set_fault("OPTIONS", garbage="this is not SIP")
    ex = send_request(kam.host, kam.port(transport), transport=transport, timeout_s=0.3)
    assert ex.response == b"this is not SIP"


def test_register_without_auth_is_challenged_with_qop(kam: KamailioPeer) -> None:
    first, _ = register(kam.host, kam.udp_port, user="monitor", password="x")
    assert first.status == 401 and first.response is not None
    challenge = header(first.response, "WWW-Authenticate") or ""
    assert challenge.startswith("Digest ")
    assert 'realm="sipwatch.test"' in challenge
    assert 'qop="auth"' in challenge


def test_register_without_auth_is_challenged_without_qop(kamailio_noqop: KamailioPeer) -> None:
    peer = kamailio_noqop
    first, second = register(peer.host, peer.udp_port, user="alice", password="alice-pw")
    assert first.status == 401 and first.response is not None
    challenge = header(first.response, "WWW-Authenticate") or ""
    assert challenge.startswith("Digest ") and "qop" not in challenge
    assert second is not None and second.status == 200


def _bindings(peer: KamailioPeer, user: str) -> str:
    try:
        return peer.kamcmd("ul.lookup", "location", user)
    except RuntimeError as exc:  # "error: 404 - AOR not found"
        assert "not found" in str(exc)
        return ""


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_register_then_unregister(kam: KamailioPeer, transport: str) -> None:
    # rawsip registers the Contact sip:USER@127.0.0.1:9;transport=T. Other tests may hold
    # their own bindings for the same user on this session peer: look at ours only.
    ours = f"sip:alice@127.0.0.1:9;transport={transport}"
    port = kam.port(transport)
    password = kam.users["alice"]
    _, ok = register(kam.host, port, user="alice", password=password, transport=transport)
    assert ok is not None and ok.status == 200 and ok.response is not None
    assert f"<{ours}>;expires=60" in ok.response.decode()
    assert ours in _bindings(kam, "alice")

    _, gone = register(
        kam.host, port, user="alice", password=password, transport=transport, expires_s=0
    )
    assert gone is not None and gone.status == 200 and gone.response is not None
    assert ours not in gone.response.decode()
    assert ours not in _bindings(kam, "alice")


def test_register_with_wrong_password_is_challenged_again(kam: KamailioPeer) -> None:
    _, second = register(kam.host, kam.udp_port, user="alice", password="wrong")
    assert second is not None and second.status == 401


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("scenario", "status"), [("200", 200), ("503", 503)])
def test_sipp_uas_answers(
    sipp_uas: SippFactory, scenario: str, status: int, transport: str
) -> None:
    peer = sipp_uas(scenario, transport=transport)
    ex = send_request(peer.host, peer.port, transport=transport)
    assert ex.status == status and ex.response is not None
    assert header(ex.response, "Retry-After") == ("30" if scenario == "503" else None)
    assert header(ex.response, "Call-ID") == header(ex.request, "Call-ID")


def test_sipp_uas_answers_a_retransmission_again(sipp_uas: SippFactory) -> None:
    peer = sipp_uas("200")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        request = build_request(
            method="OPTIONS", ruri=peer.uri(), transport="udp", local=sock.getsockname()
        )
        for _ in range(2):  # the same bytes twice: a retransmission (RFC 3261 §17.1.2.2)
            sock.sendto(request, (peer.host, peer.port))
            assert sock.recv(65536).startswith(b"SIP/2.0 200 OK\r\n")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_silent_never_answers(sipp_uas: SippFactory, transport: str) -> None:
    peer = sipp_uas("silent", transport=transport)
    assert peer.uri().startswith(f"sip:monitor@127.0.0.1:{peer.port}")
    ex = send_request(peer.host, peer.port, transport=transport, timeout_s=0.3)
    assert ex.response is None


def test_closed_ports_are_closed(closed_udp_port: int, closed_tcp_port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_tcp_port), timeout=1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", closed_udp_port))
        sock.settimeout(1.0)
        sock.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
        with pytest.raises(ConnectionRefusedError):  # ICMP port unreachable
            sock.recv(100)


def test_free_port_both_is_free_for_udp_and_tcp() -> None:
    port = free_port("both")
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_stop_leaves_no_process_even_when_frozen(tmp_path: Path) -> None:
    peer = start_kamailio(tmp_path / "kam", tls=False)  # no users: an edge of the template
    try:
        pids = peer.pids()
        assert peer.pid in pids and len(pids) > 2  # main + workers, one process group
        assert os.getpgid(peer.pid) == peer.pid  # its own session: SIGSTOP-able as a group
        os.killpg(peer.pid, signal.SIGSTOP)
        assert send_request(peer.host, peer.udp_port, timeout_s=0.3).response is None
    finally:
        started = time.monotonic()
        peer.stop(timeout_s=3.0)
    assert time.monotonic() - started < 3.0
    assert not [pid for pid in pids if _alive(pid)]
    assert peer.pids() == []
    assert not peer.is_running()
    peer.stop()  # idempotent
