"""`make demo` (`python -m testbed.demo [--rundir DIR]` from the repo root): start a local
Kamailio PBX, probe it, break it, probe again.

Owns: the narrated walk-through only. It uses the same pieces an operator does: a config file
(written to the run directory and printed), `load_settings`, and `run_probe` for each probe.
Everything it starts is stopped by PID before it returns, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sipwatch.config import load_settings
from sipwatch.exitcodes import PROBE_ALIVE as EXIT_ALIVE
from sipwatch.exitcodes import probe_exit_code as exit_code_for
from sipwatch.model import ProbeResult
from sipwatch.probes import run_probe
from testbed.kamailio import KamailioPeer, start_kamailio

PASSWORD = "demo-monitor-secret"  # a throwaway secret of the throwaway PBX the demo starts

CONFIG = """\
# Written by `python -m testbed.demo` for the Kamailio it started; run it again with
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
name = "pbx-ws"
kind = "sip_options"
uri = "{ws}"
timeout_s = 2.0

[[probes]]
name = "pbx-wss"
kind = "sip_options"
uri = "{wss}"
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


DAEMON_CONFIG = """\
# `sipwatch run` as the demo starts it: its own PBX, a dry-run Pacemaker agent working on a
# file CIB (3 nodes, the VIP + PBX group g_pbx on n1), the HTTP endpoint on loopback.
policy = "{policy}"

[daemon]
http_host = "127.0.0.1"
http_port = {http_port}

[cluster]
agent = "health_attribute"
dry_run = true
node = "n1"
resource = "g_pbx"
cib_file = "{cib}"
freeze_file = "{base}/freeze"

[[probes]]
name = "pbx-udp"
kind = "sip_options"
uri = "{udp}"
interval_s = 0.5
timeout_s = 0.4

[[probes]]
name = "pbx-tcp"
kind = "sip_options"
uri = "{tcp}"
interval_s = 0.5
timeout_s = 0.4

[[probes]]
name = "pbx-process"
kind = "pbx_process"
pidfile = "{pidfile}"
process_name = "kamailio"
interval_s = 0.5
timeout_s = 0.4

[[probes]]
name = "pbx-register"
kind = "sip_register"
uri = "{reg}"
password_file = "{pwfile}"
interval_s = 2.0
timeout_s = 1.0
"""

#: The demo's policy: the shipped "fast" one, without its startup grace, so that the
#: verdict moves within seconds.
DEMO_POLICY = """\
description = "demo: fast, no startup grace"
startup_grace_s = 0.0
[defaults]
fall = 2
rise = 2
window_failures = 3
window_s = 10.0
[kinds.sip_options]
role = "critical"
[kinds.sip_register]
role = "major"
[kinds.pbx_process]
role = "critical"
fall = 1
"""


def _get(port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _wait_verdict(port: int, want: str, timeout_s: float = 15.0) -> float | None:
    """Poll /readyz until the verdict is `want`; a progress line while waiting."""
    started = time.monotonic()
    while (waited := time.monotonic() - started) < timeout_s:
        _, body = _get(port, "/readyz")
        body = body.strip()
        if body.startswith(want):
            print(f"\r   verdict {want} after {waited:4.1f} s{' ' * 30}", flush=True)
            return waited
        print(
            f"\r   waiting for verdict {want} ... {waited:4.1f} s ({body.split(':')[0][:30]})",
            end="",
            flush=True,
        )
        time.sleep(0.2)
    print(flush=True)
    _say(f"   !! verdict still not {want} after {timeout_s:g} s")
    return None


def _show_status(port: int, actions_since: int = 0) -> int:
    import json

    status = json.loads(_get(port, "/status")[1])
    _say(
        f"   /status: verdict {status['verdict']}, score {status['score']}, "
        f"eligible {status['eligible']}"
    )
    for name, probe in status["probes"].items():
        last = probe["last"] or {}
        rtt = probe["rtt_ewma_ms"]
        _say(
            f"     {name:<13} {last.get('outcome', '-'):<10} runs {probe['runs']:<4} "
            f"rtt ewma {rtt if rtt is not None else '-'} ms"
        )
    for reason in status["reasons"][:3]:
        _say(f"     reason: {reason['probe'] or '(score)'} {reason['outcome']}: {reason['detail']}")
    actions = status["actions"]
    for action in actions[actions_since:]:
        _say(
            f"     action: {action['action']} -> {action['result']}: "
            f"{action.get('summary') or action.get('detail')}"
        )
    return len(actions)


def _daemon_part(base: Path, kam: KamailioPeer, pwfile: Path) -> int:
    """`sipwatch run` against the PBX, a dry-run Pacemaker agent, faults, recovery."""
    import subprocess

    from testbed import free_port
    from testbed.pacemaker import FileCluster

    _say()
    _say("== the daemon: `sipwatch run` with its HTTP endpoint and a DRY-RUN Pacemaker agent")
    cib = FileCluster.build(base / "cib.xml")
    _say(
        f"   file CIB {cib.path}: nodes n1 n2 n3, group g_pbx on "
        f"{', '.join(sorted(cib.placement()))} (node-health-strategy=migrate-on-red)"
    )
    (base / "policy.toml").write_text(DEMO_POLICY)
    port = free_port("tcp")
    config = base / "daemon.toml"
    config.write_text(
        DAEMON_CONFIG.format(
            policy=base / "policy.toml",
            http_port=port,
            cib=cib.path,
            base=base,
            udp=kam.uri("udp", user="ping"),
            tcp=kam.uri("tcp", user="ping"),
            pidfile=kam.rundir / "kamailio.pid",
            reg=kam.uri("udp"),
            pwfile=pwfile,
        )
    )
    log = base / "daemon.log"
    sipwatch = str(Path(sys.executable).parent / "sipwatch")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sipwatch, "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    failures = 0
    try:
        _say(
            f"   sipwatch run (pid {proc.pid}) on http://127.0.0.1:{port} "
            "(/livez /readyz /active /status /metrics)"
        )
        failures += _wait_verdict(port, "green") is None
        seen = _show_status(port)

        _say()
        _say("== fault: the PBX drops every OPTIONS (kamcmd switch)")
        kam.set_fault("OPTIONS", drop=True)
        failures += _wait_verdict(port, "red") is None
        time.sleep(0.5)  # the action runs off the event loop
        seen = _show_status(port, seen)
        kam.clear_faults()
        failures += _wait_verdict(port, "green") is None
        seen = _show_status(port, seen)

        _say()
        _say("== fault: the whole PBX process group stopped (SIGSTOP): hung")
        os.killpg(kam.pid, signal.SIGSTOP)
        try:
            failures += _wait_verdict(port, "red") is None
            time.sleep(0.5)
            seen = _show_status(port, seen)
        finally:
            os.killpg(kam.pid, signal.SIGCONT)
        failures += _wait_verdict(port, "green") is None
        _say(
            f"   the CIB was not touched (dry run): g_pbx still on "
            f"{', '.join(sorted(cib.placement()))}, #health-sipwatch on n1 = "
            f"{cib.node_attribute('n1', '#health-sipwatch')}"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(5)
        _say(f"   sipwatch run stopped (SIGTERM), exit {code}; its log: {log}")
        failures += code != 0
    return failures


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
            f"WS port {kam.ws_port}, WSS port {kam.wss_port}, realm {kam.realm}"
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
                ws=kam.uri("ws", user="ping"),
                wss=kam.uri("wss", user="ping"),
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
            "healthy PBX: OPTIONS over UDP, TCP, TLS, WS, WSS; REGISTER with digest auth",
            kam,
            config,
            None,
        )
        failures += sum(1 for r in healthy if not r.alive)

        # WebSocket alone broken (what strands WebRTC users while UDP stays green).
        got = _step(
            "fault: WebSocket upgrade answered HTTP 503 -> bad_status; UDP still ok",
            kam,
            config,
            lambda: kam.set_ws_fault(reject=503, reason="Service Unavailable"),
            only=("pbx-udp", "pbx-ws", "pbx-wss"),
        )
        want = {"pbx-udp": "ok", "pbx-ws": "bad_status", "pbx-wss": "bad_status"}
        failures += sum(1 for r in got if str(r.outcome) != want[r.probe])

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

        failures += _daemon_part(base, kam, pwfile)

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
    _say("== single-PBX part finished: every probe reported what the PBX was doing")
    return _lab_part()


def _lab_part() -> int:
    """The mission itself: a real failover in the three-node lab (testbed/
    demo_lab.py), where root and network namespaces allow it."""
    from testbed.demo_lab import run_lab_demo, skipped_because

    _say()
    if os.environ.get("SIPWATCH_DEMO_LAB", "1") == "0":
        _say("== the three-node lab part is skipped: SIPWATCH_DEMO_LAB=0")
        return 0
    why = skipped_because()
    if why:
        _say(f"== the three-node lab part is skipped: {why}")
        return 0
    try:
        rc = run_lab_demo(_say)
    except KeyboardInterrupt:
        _say("interrupted: the lab was removed")
        return 130
    _say()
    _say("== demo finished" + ("" if rc == 0 else " with an unexpected lab result"))
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m testbed.demo", description="start a local Kamailio PBX and probe it"
    )
    p.add_argument("--rundir", help="where to keep the PBX's files (default: a temp dir)")
    args = p.parse_args(argv)
    try:
        return run_demo(args.rundir)
    except KeyboardInterrupt:  # before the PBX is up (run_demo handles it from then on)
        return 130


if __name__ == "__main__":
    sys.exit(main())
