"""The daemon's kept stream connections (ProbeContext.keep_connections), against a real
Kamailio over TCP and TLS: one connection carries run after run (same local port, one
connection seen from our side), and after a Kamailio restart exactly one run reports the
broken connection, the next opens a new one and is green. One-shot runs keep nothing."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from sipwatch.probes import run_probe
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_options import SipOptionsSpec
from testbed import start_kamailio

pytestmark = pytest.mark.peers


def _established_to(port: int) -> list[int]:
    """Local ports of this process's established TCP connections to `port`."""
    return sorted(
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_one_connection_run_after_run_and_a_restart_reported_once(tmp_path, transport):
    kam = start_kamailio(tmp_path / "kam", tls=True, ws=False)
    try:
        spec = SipOptionsSpec(
            name="pbx", uri=kam.uri(transport, user="ping"), timeout_s=2.0, tls_verify=False
        )
        ctx = ProbeContext(keep_connections=True)
        port = kam.port(transport)

        async def runs() -> None:
            first = await run_probe(spec, ctx)
            assert (str(first.outcome), first.extra["connection"]) == ("ok", "new")
            ports = _established_to(port)
            assert len(ports) == 1
            for _ in range(3):
                again = await run_probe(spec, ctx)
                assert (str(again.outcome), again.extra["connection"]) == ("ok", "reused")
                assert _established_to(port) == ports  # same local port, still one

            await asyncio.to_thread(kam.restart)
            broken = await run_probe(spec, ctx)
            assert str(broken.outcome) != "ok", broken
            assert broken.extra["connection"] == "broken"
            assert "broke since the last run" in broken.detail
            fresh = await run_probe(spec, ctx)
            assert (str(fresh.outcome), fresh.extra["connection"]) == ("ok", "new"), fresh
            assert len(_established_to(port)) == 1
            ctx.memory.close()
            for _ in range(200):  # the transport closes on the loop's next turns: bounded wait
                if not _established_to(port):
                    break
                await asyncio.sleep(0.01)
            assert _established_to(port) == []

        asyncio.run(runs())
    finally:
        kam.stop()


def test_one_shot_runs_keep_nothing(kam):
    spec = SipOptionsSpec(uri=kam.uri("tcp", user="ping"), timeout_s=2.0)

    async def once() -> None:
        result = await run_probe(spec, ProbeContext())
        assert str(result.outcome) == "ok" and "connection" not in result.extra
        assert _established_to(kam.port("tcp")) == []

    asyncio.run(once())


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "daemon-default"])
def test_websocket_upgrades_refused_are_seen_only_without_a_kept_connection(tmp_path, keep):
    """The trade-off of daemon.keep_connections, and why it is off by default: Kamailio
    refusing every new WebSocket upgrade (`kamcmd ws.disable`, the lab's fault ws_dead)
    leaves an open connection working. Over a kept connection the probe says ok while every
    WebRTC client that connects now gets 503; with the default (a connection per run) it
    reports the 503 at once."""
    from sipwatch.config import load_config

    kam = start_kamailio(tmp_path / "kam", tls=False, ws=True)
    try:
        cfg = tmp_path / "sipwatch.toml"
        cfg.write_text(
            f"[daemon]\nkeep_connections = {'true' if keep else 'false'}\n"
            f'[[probes]]\nname = "pbx-ws"\nkind = "sip_options"\n'
            f'uri = "{kam.uri("ws", user="ping")}"\ntimeout_s = 2.0\n'
        )
        settings, _ = load_config(cfg)
        # as sipwatch run builds the probes' context from the config
        ctx = ProbeContext(keep_connections=settings.daemon.keep_connections)
        (spec,) = settings.probes

        async def runs() -> tuple[str, str]:
            first = await run_probe(spec, ctx)
            assert str(first.outcome) == "ok", first
            await asyncio.to_thread(kam.kamcmd, "ws.disable")
            after = await run_probe(spec, ctx)
            ctx.memory.close()
            return str(after.outcome), after.detail

        outcome, detail = asyncio.run(runs())
        if keep:
            assert outcome == "ok"  # the blind spot of a kept connection
        else:
            assert outcome == "bad_status" and "503" in detail, detail
    finally:
        kam.stop()
