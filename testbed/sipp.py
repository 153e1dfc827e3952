"""sipp as a scripted UAS on the loopback: always 200, always 503 + Retry-After, or silent;
and sipp as the IVR of one call (`start_sipp_ivr`: a scenario file, RTP echo, `-m 1`).

Owns: starting sipp with one of the scenario files next to this module, waiting (bounded)
until it is ready, and stopping it by its PID. The screen output goes to
RUNDIR/sipp-<scenario>-<transport>-<port>.screen, unexpected messages to ...errors.log.

sipp runs with -nd (no default behaviour): without it sipp would answer unexpected messages
by sending BYE/CANCEL on its own, which a probe would then see as garbage.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from testbed import rawsip
from testbed.process import (
    TestbedError,
    check_loopback,
    free_port,
    log_tail,
    port_bound,
    require_tool,
    stop_process,
)

__all__ = ["SCENARIOS", "SippIvr", "SippPeer", "start_sipp_ivr", "start_sipp_uas"]

# scenario name -> the status code its readiness check expects (None: never answers)
SCENARIOS: dict[str, int | None] = {"200": 200, "503": 503, "silent": None}
_TRANSPORT_FLAG = {"udp": "u1", "tcp": "t1"}
_START_ATTEMPTS = 3


@dataclass
class SippPeer:
    """A running sipp UAS. Stop it with stop() (idempotent)."""

    host: str
    port: int
    transport: str
    pid: int
    scenario: str = "200"
    screen_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def uri(self, user: str = "monitor") -> str:
        """sip:monitor@127.0.0.1:P for UDP, sip:monitor@127.0.0.1:P;transport=tcp for TCP."""
        hostport = f"{rawsip.format_host(self.host)}:{self.port}"
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{user}@{hostport}{suffix}"

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the PID, SIGKILL after timeout_s; idempotent."""
        if self._proc is not None:
            stop_process(self._proc, timeout_s)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> SippPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait_ready(peer: SippPeer, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """Empty string once sipp answers (or, for "silent", has bound its port); else why not."""
    expected = SCENARIOS[peer.scenario]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"sipp exited with status {proc.returncode}"
        if not port_bound(peer.host, peer.port, peer.transport):
            pass  # an OPTIONS now would only be lost: UDP sees no ICMP error when unconnected
        elif expected is None:
            return ""
        else:
            try:
                ex = rawsip.send_request(
                    peer.host, peer.port, transport=peer.transport, timeout_s=0.3
                )
            except OSError:
                ex = None
            if ex is not None and ex.status == expected:
                return ""
        time.sleep(0.02)
    return f"not ready on {peer.transport}:{peer.host}:{peer.port} within {timeout_s}s"


def start_sipp_uas(
    scenario: str,
    rundir: Path,
    *,
    transport: str = "udp",
    host: str = "127.0.0.1",
    port: int | None = None,
    ready_timeout_s: float = 5.0,
) -> SippPeer:
    """Start sipp as a UAS running `scenario` ("200", "503" or "silent") and wait until ready.

    Readiness: for "200"/"503" an OPTIONS gets that answer; for "silent" the port is bound
    (seen in /proc/net). Without `port` a free one is picked (retried on a bind race).
    Raises TestbedError with the screen tail on failure, MissingToolError without sipp.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, not {scenario!r}")
    if transport not in _TRANSPORT_FLAG:
        raise ValueError(f"transport must be udp or tcp, not {transport!r}")
    check_loopback(host)
    sipp = require_tool("sipp")
    rundir = Path(rundir).resolve()
    rundir.mkdir(parents=True, exist_ok=True)
    xml = resources.files("testbed").joinpath(f"sipp_uas_{scenario}.xml")
    scenario_file = rundir / f"sipp_uas_{scenario}.xml"
    scenario_file.write_text(xml.read_text())

    last_error = ""
    for _ in range(_START_ATTEMPTS if port is None else 1):
        use_port = port if port is not None else free_port(transport, host)
        stem = f"sipp-{scenario}-{transport}-{use_port}"
        screen = rundir / f"{stem}.screen"
        argv = [
            sipp,
            "-sf", str(scenario_file),
            "-i", host,
            "-p", str(use_port),
            "-t", _TRANSPORT_FLAG[transport],
            "-nd",
            "-nostdin",
            "-f", "10",  # screen refresh: the screen file grows slower
            "-trace_err",
            "-error_file", str(rundir / f"{stem}.errors.log"),
        ]  # fmt: skip
        with screen.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=rundir,
                start_new_session=True,
            )
        peer = SippPeer(
            host=host,
            port=use_port,
            transport=transport,
            pid=proc.pid,
            scenario=scenario,
            screen_file=screen,
            _proc=proc,
        )
        try:
            problem = _wait_ready(peer, proc, ready_timeout_s)
        except BaseException:  # e.g. KeyboardInterrupt: never leave a sipp behind
            peer.stop()
            raise
        if not problem:
            return peer
        peer.stop()
        errors = log_tail(rundir / f"{stem}.errors.log", 10)
        last_error = (
            f"sipp {scenario} did not become ready: {problem}\n"
            f"--- errors ---\n{errors}\n--- screen tail ---\n{log_tail(screen, 20)}"
        )
        if "Address already in use" not in errors:
            break
    raise TestbedError(last_error)


@dataclass
class SippIvr:
    """sipp as an IVR running one scenario file for exactly one call (`-m 1`): its exit
    status says whether every message the scenario expects (ACK, CANCEL, BYE...) arrived."""

    host: str
    port: int
    media_port: int
    transport: str
    pid: int
    screen_file: Path
    errors_file: Path
    messages_file: Path
    stat_file: Path
    _proc: subprocess.Popen[bytes] = field(repr=False, compare=False)

    def uri(self, user: str = "ivr") -> str:
        hostport = f"{rawsip.format_host(self.host)}:{self.port}"
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{user}@{hostport}{suffix}"

    def wait(self, timeout_s: float = 10.0) -> int:
        """sipp's exit status once its one call is over (bounded; TestbedError if not)."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TestbedError(
                f"sipp {self.screen_file.name} still running after {timeout_s}s:\n"
                f"{log_tail(self.errors_file, 10)}\n{log_tail(self.screen_file, 20)}"
            ) from None

    def received(self, method: str) -> int:
        """How many `method` requests sipp received, retransmissions included (its message
        log: sipp takes a byte-identical request for a retransmission and answers it with
        its last message instead of moving on, so its scenario alone cannot count them)."""
        try:
            text = self.messages_file.read_text(errors="replace")
        except OSError:
            return 0
        count = 0
        for block in text.split(" message received [")[1:]:
            lines = [line for line in block.splitlines()[1:] if line.strip()]
            count += bool(lines) and lines[0].startswith(f"{method} ")
        return count

    def stats(self) -> dict[str, str]:
        """sipp's latest counters (`-trace_stat`, written every second and at exit), by
        column: `CurrentCall` (calls still open), `SuccessfulCall(C)`, `FailedCall(C)`,
        `TotalCallCreated`... Empty before the first write."""
        try:
            rows = self.stat_file.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        if len(rows) < 2:
            return {}
        names, last = rows[0].split(";"), rows[-1].split(";")
        return dict(zip(names, last, strict=False))

    def explain(self) -> str:
        """The error log and screen tail, for an assertion message."""
        return f"--- errors ---\n{log_tail(self.errors_file, 15)}\n--- screen ---\n" + log_tail(
            self.screen_file, 30
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        stop_process(self._proc, timeout_s)

    def __enter__(self) -> SippIvr:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_sipp_ivr(
    scenario: Path,
    rundir: Path,
    *,
    rtp_echo: bool = True,
    transport: str = "udp",
    host: str = "127.0.0.1",
    keys: dict[str, str] | None = None,
    call_timeout_s: float = 15.0,
    ready_timeout_s: float = 5.0,
    calls: int = 1,
    max_open: int | None = None,
) -> SippIvr:
    """Start `sipp -sf SCENARIO -m 1` as the IVR of one call, its media on a port of its own
    (`-mi/-mp`, `[media_port]` in the SDP; with `rtp_echo`, every RTP packet that arrives
    there is sent back to its source). `keys` become `-key NAME VALUE` ([NAME] in the
    scenario). Ready once its SIP port is bound: no probe message is sent (it would be the
    one call). `calls`: how many calls before sipp exits (0: until stopped or
    `call_timeout_s`, sipp's global timeout); `max_open`: sipp's `-l`, the calls it holds
    at once. sipp writes its counters every second to `stat_file` (`stats()`).
    Raises TestbedError / MissingToolError."""
    if transport not in _TRANSPORT_FLAG:
        raise ValueError(f"transport must be udp or tcp, not {transport!r}")
    check_loopback(host)
    sipp = require_tool("sipp")
    scenario = Path(scenario).resolve()
    rundir = Path(rundir).resolve()
    rundir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(_START_ATTEMPTS):
        port = free_port(transport, host)
        media_port = free_port("udp", host)
        stem = f"sipp-ivr-{scenario.stem}-{port}"
        screen, errors = rundir / f"{stem}.screen", rundir / f"{stem}.errors.log"
        messages = rundir / f"{stem}.messages.log"
        stat = rundir / f"{stem}.stat.csv"
        argv = [
            sipp, "-sf", str(scenario), "-i", host, "-p", str(port),
            "-t", _TRANSPORT_FLAG[transport], "-mi", host, "-mp", str(media_port),
            "-timeout", f"{call_timeout_s:g}s", "-timeout_error",
            "-nd", "-nostdin", "-f", "10", "-trace_err", "-error_file", str(errors),
            "-trace_msg", "-message_file", str(messages),
            "-trace_stat", "-fd", "1", "-stf", str(stat),
        ]  # fmt: skip
        if calls:
            argv += ["-m", str(calls)]
        if max_open is not None:
            argv += ["-l", str(max_open)]
        for name, value in (keys or {}).items():
            argv += ["-key", name, value]
        if rtp_echo:
            argv.append("-rtp_echo")
        with screen.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=rundir, start_new_session=True,
            )  # fmt: skip
        ivr = SippIvr(
            host, port, media_port, transport, proc.pid, screen, errors, messages, stat, proc
        )
        deadline = time.monotonic() + ready_timeout_s
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if port_bound(host, port, transport) and port_bound(host, media_port, "udp"):
                    return ivr
                time.sleep(0.02)
        except BaseException:
            ivr.stop()
            raise
        ivr.stop()
        last_error = f"sipp {scenario.name} did not bind its ports:\n{ivr.explain()}"
        if "Address already in use" not in last_error:
            break
    raise TestbedError(last_error)
