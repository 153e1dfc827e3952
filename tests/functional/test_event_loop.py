"""The event loop switch (sipwatch/event_loop.py): the standard loop by default, uvloop when
asked for and installed, a clear error (exit 6, no traceback) for anything else; real probes
against the session's Kamailio on uvloop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from sipwatch.errors import ConfigError
from sipwatch.event_loop import run

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_standard_loop_is_the_default(monkeypatch):
    monkeypatch.delenv("SIPWATCH_EVENT_LOOP", raising=False)
    assert run(_loop_module()).startswith("asyncio")


def test_uvloop_when_asked_for(monkeypatch):
    pytest.importorskip("uvloop")
    monkeypatch.setenv("SIPWATCH_EVENT_LOOP", "uvloop")
    assert run(_loop_module()).startswith("uvloop")
    assert run(_loop_module(), "auto").startswith("uvloop")
    assert run(_loop_module(), "asyncio").startswith("asyncio")


def test_a_bad_choice_is_a_config_error():
    with pytest.raises(ConfigError, match="SIPWATCH_EVENT_LOOP: 'tokio' is not one of"):
        run(_loop_module(), "tokio")


def test_run_with_a_bad_choice_exits_6_without_a_traceback(tmp_path):
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text("[daemon]\nhttp_port = 0\n")
    done = subprocess.run(
        [SIPWATCH, "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "SIPWATCH_EVENT_LOOP": "tokio"},
        check=False,
    )
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr and "SIPWATCH_EVENT_LOOP" in done.stderr


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_probes_work_on_uvloop(kam, transport):
    pytest.importorskip("uvloop")
    from sipwatch.probes import run_probe
    from sipwatch.probes._sip import ProbeContext
    from sipwatch.probes.sip_options import SipOptionsSpec

    spec = SipOptionsSpec(uri=kam.uri(transport, user="ping"), timeout_s=2.0, tls_verify=False)
    result = run(run_probe(spec, ProbeContext()), "uvloop")
    assert (str(result.outcome), result.status_code) == ("ok", 200), result.detail
