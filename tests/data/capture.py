"""Regenerate the captured SIP messages in this directory from real peers.

    PYTHONPATH=. .venv/bin/python tests/data/capture.py     (from the repo root: the rig,
                                                            testbed/, is not installed)

One message per *.sip file, the exact bytes received (CRLF line ends, no trailing newline
added). Responses are captured by sending a raw request from a Python socket
(testbed.rawsip) and saving the reply; requests by receiving what sipsak and sipp
send to a Python UDP socket. Tags, nonces, Call-IDs and ports differ on every run.

    kamailio_options_200_udp.sip       Kamailio 5.6: 200 OK to OPTIONS over UDP
    kamailio_options_200_tcp.sip       the same over TCP
    kamailio_register_401_qop.sip      401 to REGISTER without credentials, qop="auth"
    kamailio_register_401_noqop.sip    401 from an instance started with qop=False
    kamailio_register_200.sip          200 OK to the authenticated REGISTER (Contact;expires=60)
    kamailio_register_200_unregister.sip  200 OK to REGISTER with Expires: 0 (no Contact)
    kamailio_options_503_retry_after.sip  503 + Retry-After: 30 via the fault switch
    sipp_options_200.sip               sipp 3.6 UAS scenario sipp_uas_200.xml
    sipp_options_503.sip               sipp 3.6 UAS scenario sipp_uas_503.xml (Retry-After: 30)
    sipsak_options_request.sip         the OPTIONS request `sipsak -s` sends (sipsak 0.9.8.1
                                       drops the last digit of a 5-digit port in the
                                       Request-URI and To: a real quirk, kept as captured)
    sipp_invite_request.sip            the INVITE (with SDP) sipp's built-in `-sn uac` sends
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from testbed import free_port, start_kamailio, start_sipp_uas
from testbed.process import require_tool, stop_process
from testbed.rawsip import Exchange, header, register, send_request

HERE = Path(__file__).resolve().parent
USERS = {"monitor": "monitor-secret-1", "alice": "alice-pw"}


def save(name: str, data: bytes | None) -> None:
    if not data:
        raise SystemExit(f"capture of {name} got no bytes")
    (HERE / name).write_bytes(data)
    first_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    print(f"{name}: {first_line} ({len(data)} bytes)")


def response(ex: Exchange | None) -> bytes | None:
    return None if ex is None else ex.response


def _answer_200(sock: socket.socket, request: bytes, addr: tuple[str, int]) -> None:
    """A minimal 200 so the sender stops retransmitting (RFC 3261 §8.2.6)."""
    lines = [b"SIP/2.0 200 OK"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        value = header(request, name)
        if value is not None:
            lines.append(f"{name}: {value}".encode())
    lines.append(b"Content-Length: 0")
    sock.sendto(b"\r\n".join(lines) + b"\r\n\r\n", addr)


def receive_request(argv_for_port: list[str], timeout_s: float = 5.0) -> bytes:
    """Run a client against a Python UDP socket and return the first datagram it sends."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        argv = [arg.replace("{PORT}", str(port)) for arg in argv_for_port]
        with tempfile.TemporaryDirectory() as cwd:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,
            )
            try:
                sock.settimeout(timeout_s)
                data, addr = sock.recvfrom(65536)
                _answer_200(sock, data, addr)
                return data
            finally:
                stop_process(proc, timeout_s=3.0)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sipwatch-capture-") as tmp:
        rundir = Path(tmp)
        with start_kamailio(rundir / "kam", users=USERS, qop=True, tls=False) as kam:
            save("kamailio_options_200_udp.sip", send_request(kam.host, kam.udp_port).response)
            save(
                "kamailio_options_200_tcp.sip",
                send_request(kam.host, kam.tcp_port, transport="tcp").response,
            )
            first, second = register(
                kam.host, kam.udp_port, user="monitor", password=USERS["monitor"], expires_s=60
            )
            save("kamailio_register_401_qop.sip", first.response)
            save("kamailio_register_200.sip", response(second))
            _, gone = register(
                kam.host, kam.udp_port, user="monitor", password=USERS["monitor"], expires_s=0
            )
            save("kamailio_register_200_unregister.sip", response(gone))
            kam.set_fault("OPTIONS", code=503, reason="Service Unavailable", retry_after_s=30)
            save(
                "kamailio_options_503_retry_after.sip",
                send_request(kam.host, kam.udp_port).response,
            )
        with start_kamailio(rundir / "noqop", users=USERS, qop=False, tls=False) as kam:
            first, _ = register(kam.host, kam.udp_port, user="alice", password=USERS["alice"])
            save("kamailio_register_401_noqop.sip", first.response)

        for scenario in ("200", "503"):
            with start_sipp_uas(scenario, rundir / "sipp") as peer:
                save(
                    f"sipp_options_{scenario}.sip",
                    send_request(peer.host, peer.port).response,
                )

        sipsak = require_tool("sipsak")
        save(
            "sipsak_options_request.sip",
            receive_request([sipsak, "-s", "sip:monitor@127.0.0.1:{PORT}"]),
        )
        sipp = require_tool("sipp")
        local_port = str(free_port("udp"))
        # -m 1: one call; the INVITE is all we keep, sipp is stopped right after it.
        uac = [sipp, "-sn", "uac", "127.0.0.1:{PORT}", "-i", "127.0.0.1", "-p", local_port]
        save("sipp_invite_request.sip", receive_request([*uac, "-m", "1", "-nd", "-nostdin"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
