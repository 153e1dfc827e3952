"""A private Kamailio PBX on the loopback, with fault switches, for tests and `make demo`.

Owns: rendering the kamailio.cfg template next to this module into a run directory, the
self-signed TLS cert, starting Kamailio in the foreground in its own process group, waiting
(bounded) until it answers OPTIONS, setting fault switches through kamcmd, and stopping it by
its PID.

Everything lives in the run directory: kamailio.cfg, tls.cfg, cert.pem/key.pem, kamailio.pid,
the ctl socket `kamailio_ctl` and `kamailio.log` (stdout and stderr). Nothing goes to /run or
/etc, nothing listens beyond the loopback — except inside a network namespace the test made
(`netns=`), where it may listen on that namespace's addresses (a VIP). With `forward=True`
it relays requests not addressed to itself (a "PBX" in front of an IVR server).

Faults (htable "fault", keys "<METHOD>.<switch>", see kamailio.cfg):
    <M>.drop        int 1   no reply at all
    <M>.garbage     str     these bytes are sent back instead of a SIP reply
    <M>.delay_ms    int     the reply (normal or faulted) leaves after this many ms
    <M>.code        int     reply with this status code ...
    <M>.reason      str     ... and reason phrase (default "Fault") ...
    <M>.retry_after int     ... and a "Retry-After: <n>" header

SIP over WebSocket (RFC 7118, `ws=True`, the default): the websocket module on a plain TCP
listener (WS) and, with TLS, a TLS listener (WSS); `set_ws_fault(reject=403)` answers the
HTTP upgrade with that status instead of 101, and `kamcmd("ws.disable")` / `ws_close_all()`
break WebSocket alone while UDP, TCP and TLS keep answering.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from testbed import rawsip
from testbed.netns import Netns, run_in
from testbed.process import (
    TestbedError,
    check_loopback,
    free_port,
    group_pids,
    log_tail,
    port_bound,
    require_tool,
    stop_process,
)

__all__ = ["FAULT_SWITCHES", "Dmq", "KamailioPeer", "free_port", "start_kamailio"]

FAULT_SWITCHES = ("drop", "garbage", "delay_ms", "code", "reason", "retry_after")
MAX_DELAY_MS = 30_000  # async_ms_route's documented maximum

_TOKEN = re.compile(r"[A-Za-z0-9._~+-]+")  # user names, realms: safe inside a cfg string
_PASSWORD = re.compile(r"[\x21\x23\x25-\x5b\x5d-\x7e ]+")  # printable, no " $ \
_METHOD = re.compile(r"[A-Z]+")
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus the NUL
_ADDR_IN_USE = "Address already in use"
_START_ATTEMPTS = 3
_SHM_MB = 256


@dataclass(frozen=True)
class Dmq:
    """Dialog replication for a relaying Kamailio (start_kamailio(forward=True, dmq=...)).

    server: this node's DMQ address, "HOST:PORT", one of its UDP listeners (the node's own
    address, never a VIP: KDMQ goes node to node). peers: one to three DMQ addresses it
    notifies when it starts (they tell it the rest, multi_notify); a cluster's first node
    names itself (a seed the others notify). Name every long-lived node where nodes reboot:
    a node that can reach only seeds which are themselves split off learns only their part
    of the bus, until DMQ's next ping (60 s). A node that notifies a peer not yet listening
    finds it again only at its next ping (60 s): start the seed first. h_id_start/h_id_step:
    the dialog hash ids this node hands out (0, 1, 2 ... and step = the number of nodes;
    overlapping ranges crashed Kamailio, kamailio #2757).
    """

    server: str
    peers: tuple[str, ...]
    h_id_start: int
    h_id_step: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.peers) <= 3:
            raise ValueError("a DMQ node notifies one to three peers")
        for addr in (self.server, *self.peers):
            host, _, port = addr.rpartition(":")
            if not host or not port.isascii() or not port.isdigit():
                raise ValueError(f"DMQ address must be HOST:PORT, not {addr!r}")
        if not 0 <= self.h_id_start < self.h_id_step:
            raise ValueError("h_id_start must be in [0, h_id_step)")

    def defines(self) -> list[str]:
        first, second, third = (*self.peers, self.peers[-1], self.peers[-1])[:3]
        return [
            "#!define WITH_DIALOG",
            f'#!substdef "!DMQ_SERVER!sip:{self.server}!"',
            f'#!substdef "!DMQ_PEER!sip:{first}!"',
            f'#!substdef "!DMQ_PEER_2!sip:{second}!"',
            f'#!substdef "!DMQ_PEER_3!sip:{third}!"',
            f'#!substdef "!DLG_H_ID_START!{self.h_id_start}!"',
            f'#!substdef "!DLG_H_STEP!{self.h_id_step}!"',
        ]


@dataclass(repr=False)
class KamailioPeer:
    """A running Kamailio started by start_kamailio(). Stop it with stop() (idempotent).

    URIs (see uri()): udp → "sip:monitor@127.0.0.1:P", tcp → "sip:...:P;transport=tcp",
    tls → "sip:...:TLS_P;transport=tls", sips → "sips:monitor@127.0.0.1:TLS_P",
    ws → "sip:...:WS_P;transport=ws", wss → "sip:...:WSS_P;transport=wss".
    """

    rundir: Path
    host: str
    udp_port: int
    tcp_port: int
    tls_port: int | None
    pid: int
    realm: str
    users: dict[str, str]
    cert_file: Path | None = None
    key_file: Path | None = None
    qop: bool = True
    netns: str | None = None  # the network namespace it runs in (None: ours)
    ws_port: int | None = None  # SIP over WebSocket (plain TCP listener), None: ws=False
    wss_port: int | None = None  # SIP over secure WebSocket (TLS listener), needs tls
    _proc: subprocess.Popen[bytes] | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        # Never the passwords: only the user names.
        return (
            f"KamailioPeer(host={self.host!r}, udp_port={self.udp_port}, "
            f"tcp_port={self.tcp_port}, tls_port={self.tls_port}, ws_port={self.ws_port}, "
            f"wss_port={self.wss_port}, pid={self.pid}, "
            f"realm={self.realm!r}, users={sorted(self.users)!r}, qop={self.qop}, "
            f"rundir={str(self.rundir)!r})"
        )

    def __enter__(self) -> KamailioPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def ctl_socket(self) -> Path:
        return self.rundir / "kamailio_ctl"

    @property
    def log_file(self) -> Path:
        return self.rundir / "kamailio.log"

    @property
    def cfg_file(self) -> Path:
        return self.rundir / "kamailio.cfg"

    def port(self, transport: str = "udp") -> int:
        """The listening port for "udp", "tcp", "tls", "sips", "ws" or "wss"."""
        if transport == "udp":
            return self.udp_port
        if transport == "tcp":
            return self.tcp_port
        if transport in ("tls", "sips"):
            if self.tls_port is None:
                raise ValueError("this Kamailio was started with tls=False")
            return self.tls_port
        if transport == "ws":
            if self.ws_port is None:
                raise ValueError("this Kamailio was started with ws=False")
            return self.ws_port
        if transport == "wss":
            if self.wss_port is None:
                raise ValueError("this Kamailio was started with ws=False or tls=False")
            return self.wss_port
        raise ValueError(f"transport must be udp, tcp, tls, sips, ws or wss, not {transport!r}")

    def uri(self, transport: str = "udp", user: str = "monitor") -> str:
        """A SIP URI reaching this peer over `transport`.

        "udp" has no transport parameter (UDP is the default for a sip: URI with a numeric
        host and port, RFC 3263 §4.1); "tcp"/"tls"/"ws"/"wss" add ";transport=..."; "sips"
        gives a sips: URI on the TLS port (RFC 3261 §19.1, TLS implied, no transport
        parameter).
        """
        hostport = f"{rawsip.format_host(self.host)}:{self.port(transport)}"
        if transport == "udp":
            return f"sip:{user}@{hostport}"
        if transport == "sips":
            return f"sips:{user}@{hostport}"
        return f"sip:{user}@{hostport};transport={transport}"

    def kamcmd(self, *args: str, timeout_s: float = 5.0) -> str:
        """Run `kamcmd -s unix:RUNDIR/kamailio_ctl ARGS...` and return its stdout.

        kamcmd turns arguments that look like numbers into integers; prefix "s:" to force a
        string (set_fault does this for reasons and garbage).
        """
        argv = [require_tool("kamcmd"), "-s", f"unix:{self.ctl_socket}", *args]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TestbedError(f"kamcmd {' '.join(args)} timed out after {timeout_s}s") from exc
        out = done.stdout.decode(errors="replace")
        if done.returncode != 0 or out.startswith("error:"):
            err = done.stderr.decode(errors="replace")
            raise TestbedError(
                f"kamcmd {' '.join(args)} failed (rc={done.returncode}): {out}{err}".strip()
            )
        return out

    def set_fault(
        self,
        method: str,
        *,
        code: int | None = None,
        reason: str = "",
        retry_after_s: int | None = None,
        drop: bool = False,
        delay_ms: int = 0,
        garbage: str | None = None,
    ) -> None:
        """Replace the fault switches of `method` (e.g. "OPTIONS", "REGISTER").

        code: reply with this status (reason phrase `reason`, "Fault" when empty), plus
        "Retry-After: retry_after_s" when given. drop: never reply. delay_ms: the reply
        (normal or faulted) leaves this many ms later (10 ms resolution, at most 30000).
        garbage: send this text back instead of a SIP reply. With nothing set, the method
        behaves normally again.
        """
        method = method.upper()
        if not _METHOD.fullmatch(method):
            raise ValueError(f"not a SIP method: {method!r}")
        if code is not None and not 100 <= code <= 699:
            raise ValueError(f"status code must be 100..699, not {code}")
        if (reason or retry_after_s is not None) and code is None:
            raise ValueError("reason and retry_after_s need a code")
        if any(c in reason for c in "\r\n"):
            raise ValueError("reason must not contain CR or LF")
        if retry_after_s is not None and retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        if not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms must be 0..{MAX_DELAY_MS}, not {delay_ms}")
        for switch in FAULT_SWITCHES:
            try:
                self.kamcmd("htable.delete", "fault", f"{method}.{switch}")
            except TestbedError as exc:
                if "Key not found" not in str(exc):  # nothing to delete is fine
                    raise
        if drop:
            self.kamcmd("htable.seti", "fault", f"{method}.drop", "1")
        if garbage is not None:
            self.kamcmd("htable.sets", "fault", f"{method}.garbage", f"s:{garbage}")
        if delay_ms:
            self.kamcmd("htable.seti", "fault", f"{method}.delay_ms", str(delay_ms))
        if code is not None:
            self.kamcmd("htable.seti", "fault", f"{method}.code", str(code))
            if reason:
                self.kamcmd("htable.sets", "fault", f"{method}.reason", f"s:{reason}")
            if retry_after_s is not None:
                self.kamcmd("htable.seti", "fault", f"{method}.retry_after", str(retry_after_s))

    def clear_faults(self) -> None:
        """Every method behaves normally again (WebSocket upgrades included)."""
        self.kamcmd("htable.flush", "fault")

    def set_ws_fault(self, *, reject: int | None = None, reason: str = "") -> None:
        """Answer every WebSocket upgrade with HTTP `reject` (reason `reason`, "Fault" when
        empty) instead of 101; `reject=None` lets upgrades through again."""
        if self.ws_port is None:
            raise ValueError("this Kamailio was started with ws=False")
        if reject is not None and not 100 <= reject <= 599:
            raise ValueError(f"HTTP status must be 100..599, not {reject}")
        if reason and not _TOKEN.fullmatch(reason.replace(" ", "_")):
            raise ValueError(f"reason must match {_TOKEN.pattern} (spaces allowed)")
        for key in ("ws.reject", "ws.reason"):
            try:
                self.kamcmd("htable.delete", "fault", key)
            except TestbedError as exc:
                if "Key not found" not in str(exc):
                    raise
        if reject is not None:
            self.kamcmd("htable.seti", "fault", "ws.reject", str(reject))
            if reason:
                self.kamcmd("htable.sets", "fault", "ws.reason", f"s:{reason}")

    def ws_connection_ids(self) -> list[int]:
        """Ids of the open WebSocket connections, from `kamcmd ws.dump`."""
        # "connections: { 11: ws:127.0.0.1:45076 -> ws:127.0.0.1:46673 (state: OPEN, ...) }"
        out = self.kamcmd("ws.dump")
        return [int(m) for m in re.findall(r"(?m)^\s*(\d+):\s*wss?:", out)]

    def ws_close_all(self) -> int:
        """`kamcmd ws.close ID` for every open WebSocket connection; how many were closed."""
        ids = self.ws_connection_ids()
        for conn_id in ids:
            self.kamcmd("ws.close", str(conn_id))
        return len(ids)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the main PID (SIGCONT its group in case it was frozen), SIGKILL after
        timeout_s; returns once no process of its group is left. Idempotent."""
        if self._proc is not None:
            stop_process(self._proc, timeout_s)

    def restart(self, ready_timeout_s: float = 10.0) -> None:
        """Stop it and start it again on the same ports with the same config (a PBX restart:
        every connection to it is closed); returns once it answers OPTIONS again. Loopback
        peers only (not in a namespace)."""
        if self.netns is not None:
            raise TestbedError("restart: only for peers on the loopback")
        self.stop()
        pid_file = self.rundir / "kamailio.pid"
        pid_file.unlink(missing_ok=True)
        argv = [require_tool("kamailio"), "-f", str(self.rundir / "kamailio.cfg"), "-DD", "-E"]
        argv += ["-Y", str(self.rundir), "-P", str(pid_file), "-m", str(_SHM_MB)]
        with (self.rundir / "kamailio.log").open("ab") as log:
            log.write(f"=== restart {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.rundir,
                start_new_session=True,
            )
        self._proc, self.pid = proc, proc.pid
        problem = _wait_ready(self, proc, ready_timeout_s)
        if problem:
            self.stop()
            raise TestbedError(f"Kamailio did not come back: {problem}")

    def pids(self) -> list[int]:
        """The main process and all its children (its process group), live ones only."""
        return group_pids(self.pid)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


def _render(template: str, values: Mapping[str, str]) -> str:
    text = template
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise TestbedError(f"kamailio.cfg template has unfilled placeholders {left}")
    return text


def _check_users(users: Mapping[str, str], realm: str) -> None:
    if not _TOKEN.fullmatch(realm):
        raise ValueError(f"realm must match {_TOKEN.pattern}, not {realm!r}")
    for name, password in users.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"user name must match {_TOKEN.pattern}, not {name!r}")
        if not _PASSWORD.fullmatch(password):
            # The password goes into a cfg string literal; keep quoting trivial.
            raise ValueError(f'password of {name!r} must be printable ASCII without " $ \\')


def _make_cert(rundir: Path) -> tuple[Path, Path]:
    cert, key = rundir / "cert.pem", rundir / "key.pem"
    argv = [
        require_tool("openssl"),
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TestbedError("openssl req timed out after 30s") from exc
    if done.returncode != 0:
        raise TestbedError(f"openssl req failed: {done.stderr.decode(errors='replace')}")
    key.chmod(0o600)
    return cert, key


def _write_tls_cfg(rundir: Path, cert: Path, key: Path) -> Path:
    tls_cfg = rundir / "tls.cfg"
    tls_cfg.write_text(
        "# written by testbed.kamailio\n"
        "[server:default]\n"
        "method = TLSv1.2+\n"
        "verify_certificate = no\n"
        "require_certificate = no\n"
        f"private_key = {key}\n"
        f"certificate = {cert}\n"
        "\n"
        "[client:default]\n"
        "method = TLSv1.2+\n"
        "verify_certificate = no\n"
        "require_certificate = no\n"
    )
    return tls_cfg


def _stream_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_ready(peer: KamailioPeer, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """Empty string once UDP answers OPTIONS with 200 and TCP/TLS accept; else why not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"kamailio exited with status {proc.returncode}"
        if not port_bound(peer.host, peer.udp_port, "udp"):
            time.sleep(0.02)  # an OPTIONS now would be lost without any error
            continue
        try:
            ex = rawsip.send_request(peer.host, peer.udp_port, timeout_s=0.2)
        except OSError:
            ex = None
        if ex is not None and ex.status == 200:
            ports = (peer.tcp_port, peer.tls_port, peer.ws_port, peer.wss_port)
            streams = [port for port in ports if port]
            if all(_stream_listening(peer.host, port) for port in streams):
                return _wait_forked(peer, proc, deadline)
        time.sleep(0.05)
    return f"no 200 to OPTIONS on udp:{peer.host}:{peer.udp_port} within {timeout_s}s"


def _wait_forked(peer: KamailioPeer, proc: subprocess.Popen[bytes], deadline: float) -> str:
    """Kamailio answers UDP (its UDP receivers are forked first) and accepts TCP (in the main
    process) before it has forked its TCP receivers, timers and module processes. A test
    that counts the process tree right after start raced that (the process probe saw 11 of
    13). Ready means the tree stopped growing: the same processes on three looks 50 ms
    apart."""
    seen: list[int] = []
    same = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"kamailio exited with status {proc.returncode}"
        now = sorted(group_pids(peer.pid))
        same = same + 1 if now == seen else 0
        if same >= 2:
            return ""
        seen = now
        time.sleep(0.05)
    return "kamailio kept forking processes"


def start_kamailio(
    rundir: Path,
    *,
    host: str = "127.0.0.1",
    users: dict[str, str] | None = None,
    realm: str = "sipwatch.test",
    qop: bool = True,
    tls: bool = True,
    ready_timeout_s: float = 10.0,
    netns: Netns | None = None,
    forward: bool = False,
    server_name: str | None = None,
    ws: bool = True,
    record_route: bool = False,
    dmq: Dmq | None = None,
    udp_port: int | None = None,
) -> KamailioPeer:
    """Start Kamailio in `rundir` (created if needed) and wait until it answers OPTIONS.

    UDP and TCP share one free port, TLS gets another, and with `ws` (the default) SIP over
    WebSocket gets a WS port and, with `tls`, a WSS port. On failure the process is stopped and
    TestbedError (a RuntimeError) carries the log tail; MissingToolError when kamailio,
    kamcmd or openssl is not installed.

    netns: run inside this namespace (one the test made, see testbed.netns) with
    `ip netns exec`; `host` may then be any address of that namespace, UDP/TCP use 5060,
    TLS 5061, WS 5066 and WSS 5065 (PortSIP's WSS port; the namespace is fresh), and readiness
    is checked from inside it.
    forward: relay requests not addressed to this Kamailio (the "PBX" in front of an IVR
    server, see kamailio.cfg). record_route: forward, and stay in the dialogs of the INVITEs
    it relays (Record-Route; the ACK and in-dialog requests relayed by their Route set, each
    logged as "dialog: METHOD routed by the route set"). server_name: send
    "Server: <server_name>" in replies (and use it as User-Agent); by default replies carry
    no Server header.
    dmq: track the calls it record-routes as dialogs, replicated to the DMQ peers (implies
    `forward` and `record_route`; see Dmq). udp_port: UDP/TCP on this port instead of a free
    one (a DMQ node's address must be known before its peers start).
    """
    if dmq is not None:
        record_route = True  # a dialog is tracked only where the proxy stays in it
    if netns is None:
        check_loopback(host)
    else:
        import ipaddress

        ipaddress.ip_address(host)  # ValueError for anything but an address
    if server_name is not None and not _TOKEN.fullmatch(server_name):
        raise ValueError(f"server_name must match {_TOKEN.pattern}, not {server_name!r}")
    users = dict(users or {})
    _check_users(users, realm)
    kamailio = require_tool("kamailio")
    require_tool("kamcmd")
    rundir = Path(rundir).resolve()
    rundir.mkdir(parents=True, exist_ok=True)
    ctl_socket = rundir / "kamailio_ctl"
    if len(str(ctl_socket).encode()) > _SUN_PATH_MAX:
        raise TestbedError(f"run directory path too long for a unix socket: {ctl_socket}")

    cert_file = key_file = None
    tls_cfg = None
    if tls:
        cert_file, key_file = _make_cert(rundir)
        tls_cfg = _write_tls_cfg(rundir, cert_file, key_file)

    template = resources.files("testbed").joinpath("kamailio.cfg").read_text()
    users_block = "\n".join(f'\t$sht(users=>{n}) = "{p}";' for n, p in sorted(users.items()))
    last_error = ""
    base_defines = ["#!define WITH_TLS" if tls else "# TLS off"]
    if forward or record_route:
        base_defines.append("#!define WITH_FORWARD")
    if record_route:
        base_defines.append("#!define WITH_RECORD_ROUTE")
    if dmq is not None:
        base_defines += dmq.defines()
    for _ in range(_START_ATTEMPTS):
        tls_port: int | None = None
        ws_port: int | None = None
        wss_port: int | None = None
        if netns is not None:
            port, tls_port = 5060, (5061 if tls else None)
            ws_port, wss_port = (5066, 5065 if tls else None) if ws else (None, None)
        else:
            port = udp_port if udp_port is not None else free_port("both", host)
            taken = {port}
            tls_port = _another_tcp_port(host, taken) if tls else None
            ws_port = _another_tcp_port(host, taken) if ws else None
            wss_port = _another_tcp_port(host, taken) if ws and tls else None
        defines = list(base_defines)
        if ws:
            defines += [
                "#!define WITH_WS",
                f'#!substdef "!WS_PORT!{ws_port}!"',
                f'#!substdef "!WSS_PORT!{wss_port or 0}!"',
            ]
        cfg = rundir / "kamailio.cfg"
        cfg.write_text(
            _render(
                template,
                {
                    "DEFINES": "\n".join(defines),
                    "SERVER_NAME": server_name or "sipwatch-testbed kamailio",
                    "SERVER_SIGNATURE": "no" if server_name is None else "yes",
                    "LISTEN_HOST": rawsip.format_host(host),
                    "UDP_PORT": str(port),
                    "TCP_PORT": str(port),
                    "TLS_PORT": str(tls_port or 0),
                    "CTL_SOCKET": str(ctl_socket),
                    "TLS_CFG": str(tls_cfg or ""),
                    "USERS": users_block or "\t# no users: every REGISTER is challenged\n\treturn;",
                    "REALM": realm,
                    "QOP_FLAG": "1" if qop else "0",
                },
            )
        )
        cfg.chmod(0o600)  # it holds the test passwords
        _syntax_check(kamailio, cfg)

        log_file = rundir / "kamailio.log"
        pid_file = rundir / "kamailio.pid"
        pid_file.unlink(missing_ok=True)
        with log_file.open("ab") as log:
            ports = f"{port}/{tls_port}/ws {ws_port}/wss {wss_port}"
            log.write(f"=== start {time.strftime('%H:%M:%S')} ports {ports}\n".encode())
            log.flush()
            # -DD: no fork to the background, so Popen's pid is Kamailio's main process.
            # start_new_session: own process group (pgid == pid) for SIGSTOP/SIGKILL of all.
            # -m: shared memory in MB. The websocket module frees a closed connection's memory
            # only on its timer (seconds later), ~65 KB each with TLS: 200 concurrent WSS
            # probes, round after round, exhaust the default 64 MB.
            argv = [kamailio, "-f", str(cfg), "-DD", "-E", "-Y", str(rundir), "-P", str(pid_file)]
            argv += ["-m", str(_SHM_MB)]
            proc = subprocess.Popen(
                argv if netns is None else netns.exec_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=rundir,
                start_new_session=True,
            )
        peer = KamailioPeer(
            rundir=rundir,
            host=host,
            udp_port=port,
            tcp_port=port,
            tls_port=tls_port,
            pid=proc.pid,
            realm=realm,
            users=users,
            cert_file=cert_file,
            key_file=key_file,
            qop=qop,
            netns=None if netns is None else netns.name,
            ws_port=ws_port,
            wss_port=wss_port,
            _proc=proc,
        )
        try:
            if netns is None:
                problem = _wait_ready(peer, proc, ready_timeout_s)
            else:
                wait_s = ready_timeout_s + 5
                problem = run_in(netns, _wait_ready, peer, proc, ready_timeout_s, timeout_s=wait_s)
        except BaseException:  # e.g. KeyboardInterrupt: never leave a PBX behind
            peer.stop()
            raise
        if not problem:
            return peer
        peer.stop()
        tail = log_tail(log_file)
        last_error = (
            f"Kamailio in {rundir} did not become ready: {problem}\n--- log tail ---\n{tail}"
        )
        if netns is not None or _ADDR_IN_USE not in tail.rsplit("=== start", 1)[-1]:
            break  # not a port race: retrying will not help
    raise TestbedError(last_error)


def _another_tcp_port(host: str, taken: set[int]) -> int:
    """A free TCP port not in `taken` (which it joins)."""
    while (port := free_port("tcp", host)) in taken:
        pass
    taken.add(port)
    return port


def _syntax_check(kamailio: str, cfg: Path) -> None:
    try:
        done = subprocess.run(
            [kamailio, "-c", "-f", str(cfg)], capture_output=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"kamailio -c -f {cfg} timed out") from exc
    if done.returncode != 0:
        out = (done.stdout + done.stderr).decode(errors="replace")
        tail = "\n".join(out.splitlines()[-30:])
        raise TestbedError(f"kamailio -c -f {cfg} failed:\n{tail}")
