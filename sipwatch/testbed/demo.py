"""`sipwatch demo` (`make demo`): start a local Kamailio PBX, probe it, break it, probe again.

Owns: the narrated walk-through only. It uses the same pieces an operator does: a config file
(written to the run directory and printed), `load_settings`, and `run_probe` for each probe.
Everything it starts is stopped by PID before it returns, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sipwatch.cli import EXIT_ALIVE, exit_code_for
from sipwatch.config import load_settings
from sipwatch.model import ProbeResult
from sipwatch.probes import run_probe
from sipwatch.testbed.kamailio import KamailioPeer, start_kamailio

PASSWORD = "demo-monitor-secret"  # a throwaway secret of the throwaway PBX the demo starts

CONFIG = """\
# Written by `sipwatch demo` for the Kamailio it started; run it again with
#   sipwatch probe --config {path}
[sip]
t1_s = 0.5

[[probes]]
name = "pbx-udp"
kind = "sip_options"
uri = "{udp}"
timeout_s = 2.0

[[probes]]
name = "pbx-tcp"
kind = "sip_options"
uri = "{tcp}"
timeout_s = 2.0

[[probes]]
name = "pbx-tls"
kind = "sip_options"
uri = "{tls}"
tls_ca_file = "{ca}"
timeout_s = 2.0

[[probes]]
name = "pbx-register"
kind = "sip_register"
uri = "{reg}"
password_file = "{pwfile}"
expires_s = 60
timeout_s = 2.0
"""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _row(r: ProbeResult) -> str:
    status = f"{r.status_code} {r.reason}".strip() if r.status_code else "-"
    rtt = f"{r.rtt_ms:6.1f} ms" if r.rtt_ms is not None else "      - "
    mark = "OK " if exit_code_for(str(r.outcome)) == EXIT_ALIVE else "!! "
    detail = f"  {r.detail}" if r.detail else ""
    return (
        f"  {mark}{r.probe:<13} {r.outcome!s:<11} {status:<24} rtt {rtt}  "
        f"retrans {r.retransmissions}{detail}"
    )


def _probe_all(config: Path, only: tuple[str, ...] = ()) -> list[ProbeResult]:
    settings = load_settings(config)
    ctx = settings.context()
    specs = [s for s in settings.probes if not only or s.name in only]

    async def run() -> list[ProbeResult]:
        return list(await asyncio.gather(*(run_probe(s, ctx) for s in specs)))

    started = time.monotonic()
    results = asyncio.run(run())
    for r in results:
        _say(_row(r))
    _say(f"  ({len(results)} probes in {time.monotonic() - started:.2f} s, run concurrently)")
    return results


def _step(
    title: str,
    kam: KamailioPeer,
    config: Path,
    fault: Callable[[], None] | None,
    only: tuple[str, ...] = (),
) -> list[ProbeResult]:
    _say()
    _say(f"== {title}")
    if fault is not None:
        fault()
    try:
        return _probe_all(config, only)
    finally:
        kam.clear_faults()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(rundir: str | None = None) -> int:
    base = Path(rundir) if rundir else Path(tempfile.mkdtemp(prefix="sipwatch-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    _say(f"== starting a local Kamailio PBX (run directory {base})")
    kam = start_kamailio(base / "pbx", users={"monitor": PASSWORD})
    # A SIGTERM (e.g. from a CI timeout) must still stop the PBX by its PID.
    signal.signal(signal.SIGTERM, _interrupt)
    failures = 0
    try:
        _say(
            f"   pid {kam.pid}, UDP+TCP port {kam.udp_port}, TLS port {kam.tls_port}, "
            f"realm {kam.realm}"
        )
        pwfile = base / "monitor.pass"
        pwfile.write_text(PASSWORD + "\n")
        os.chmod(pwfile, 0o600)
        config = base / "sipwatch.toml"
        config.write_text(
            CONFIG.format(
                path=config,
                udp=kam.uri("udp", user="ping"),
                tcp=kam.uri("tcp", user="ping"),
                tls=kam.uri("tls", user="ping"),
                ca=kam.cert_file,
                reg=kam.uri("udp"),
                pwfile=pwfile,
            )
        )
        _say(f"== probe config written to {config}:")
        for line in config.read_text().splitlines():
            if line and not line.startswith("#"):
                _say(f"   {line}")

        healthy = _step(
            "healthy PBX: OPTIONS over UDP, TCP, TLS; REGISTER with digest auth", kam, config, None
        )
        failures += sum(1 for r in healthy if not r.alive)

        steps: list[tuple[str, Callable[[], None], str]] = [
            (
                "fault: OPTIONS answered 503 + Retry-After (maintenance) -> draining",
                lambda: kam.set_fault("OPTIONS", code=503, reason="Maintenance", retry_after_s=120),
                "draining",
            ),
            (
                "fault: OPTIONS answered 500 -> bad_status",
                lambda: kam.set_fault("OPTIONS", code=500, reason="Server Internal Error"),
                "bad_status",
            ),
            (
                "fault: OPTIONS dropped (no answer) -> timeout; UDP retransmits, TCP does not",
                lambda: kam.set_fault("OPTIONS", drop=True),
                "timeout",
            ),
        ]
        for title, fault, expect in steps:
            got = _step(title, kam, config, fault, only=("pbx-udp", "pbx-tcp"))
            failures += sum(1 for r in got if str(r.outcome) != expect)

        _say()
        _say("== fault: PBX process group stopped (SIGSTOP), a hung PBX -> timeout")
        os.killpg(kam.pid, signal.SIGSTOP)
        try:
            got = _probe_all(config, only=("pbx-udp", "pbx-register"))
            failures += sum(1 for r in got if str(r.outcome) != "timeout")
        finally:
            os.killpg(kam.pid, signal.SIGCONT)

        _say()
        _say("== fault: PBX stopped; nothing listens -> refused at once (ICMP / RST)")
        kam.stop()
        got = _probe_all(config, only=("pbx-udp", "pbx-tcp"))
        failures += sum(1 for r in got if str(r.outcome) != "refused")
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    finally:
        kam.stop()
        if rundir is None:
            shutil.rmtree(base, ignore_errors=True)
    _say()
    if failures:
        _say(f"== demo finished with {failures} unexpected result(s)")
        return 1
    _say("== demo finished: every probe reported what the PBX was doing; PBX stopped")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
