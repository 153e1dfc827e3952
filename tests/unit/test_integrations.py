"""The pure parts of the operator integrations: the agent-check line for each daemon state,
the keepalived value, hook selection and coalescing; and the small servers/writers on real
sockets and files (no peers)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from sipwatch.agent_check import AgentCheckServer, agent_line, safe_reason
from sipwatch.hooks import HookRunner, HookSpec
from sipwatch.model import Decision, Outcome, ProbeResult, Reason, Verdict
from sipwatch.track_file import TrackFile, track_value


def decision(verdict: str, *, active: bool = True, eligible: bool = True, reasons=()) -> Decision:
    score = {"green": 100, "yellow": 70, "red": 10}[verdict]
    return Decision(Verdict(verdict), score, tuple(reasons), eligible=eligible, active=active)


RED = Reason("pbx-udp", "timeout", 1.0, effect="red", detail="down: 3 failures; last x")
DRAIN = Reason("pbx-udp", "draining", 1.0, effect="yellow", detail="draining (503...)")


@pytest.mark.parametrize(
    ("d", "frozen", "line"),
    [
        (None, False, "down #starting"),
        (decision("green"), False, "up ready 100%"),
        (decision("yellow"), False, "up ready 50%"),
        (decision("yellow", reasons=[DRAIN]), False, "up drain"),
        (decision("green"), True, "up drain"),
        (decision("red", reasons=[RED]), False, "down ready #pbx-udp_timeout"),
        (decision("red", reasons=[RED]), True, "down ready #pbx-udp_timeout"),
        (decision("red", active=False, reasons=[RED]), False, "down ready #pbx-udp_timeout"),
        (decision("green", active=False), False, "up maint"),
        (decision("yellow", active=False, reasons=[DRAIN]), True, "up maint"),
        (decision("red"), False, "down ready #red"),
    ],
)
def test_agent_line(d, frozen, line):
    assert agent_line(d, frozen=frozen) == line


def test_agent_line_drains_on_a_draining_result():
    result = ProbeResult("pbx-udp", "sip_options", "sip:x", Outcome.DRAINING, status_code=503)
    assert agent_line(decision("green"), results=[result]) == "up drain"


def test_safe_reason_is_short_and_inert():
    assert safe_reason("a b;$(rm -rf /)\n#x") == "a_b___rm_-rf_/___x"
    assert len(safe_reason("x" * 500)) == 60
    assert safe_reason("  ") == "red"


async def _ask(port: int, send: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if send:
        writer.write(send)
    data = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    return data


async def test_agent_server_answers_ignores_input_and_bounds_clients():
    server = AgentCheckServer(lambda: "up ready 100%", max_clients=3)
    await server.start("127.0.0.1", 0)
    try:
        assert await _ask(server.port) == b"up ready 100%\n"
        assert await _ask(server.port, b"backend/n1\n" * 100) == b"up ready 100%\n"
        # three clients that never close hold every slot for at most LINGER_S: a fourth is
        # cut at once (empty answer), and answered again once they are dropped
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert await _ask(server.port) == b""
        await asyncio.sleep(1.3)
        assert await _ask(server.port) == b"up ready 100%\n"
        for _, w in idle:
            w.close()
    finally:
        await server.close()


async def test_agent_server_bug_answers_down():
    def broken() -> str:
        raise RuntimeError("bug")

    server = AgentCheckServer(broken)
    await server.start("127.0.0.1", 0)
    try:
        assert await _ask(server.port) == b"down #sipwatch_error\n"
    finally:
        await server.close()


def test_track_value():
    assert track_value(decision("green")) == 0
    assert track_value(decision("yellow")) == 0  # degraded keeps the VIP
    assert track_value(decision("red")) == 1
    assert track_value(decision("green", eligible=False)) == 1


def test_track_file_failure_is_logged_once_and_retried(tmp_path, caplog):
    where = tmp_path / "d" / "track"
    TrackFile.prepare(where)
    state: list[Decision | None] = [None]
    track = TrackFile(where, lambda: state[0])
    track.write()
    assert not where.exists()  # not ready: nothing written
    state[0] = decision("red")
    track.write()
    assert where.read_text() == "1\n"
    where.unlink()
    (tmp_path / "d").rmdir()
    with caplog.at_level(logging.INFO, "sipwatch.daemon"):
        track.write()
        track.write()
        assert caplog.text.count("event=track_file_failed") == 1
        (tmp_path / "d").mkdir()
        track.write()
    assert where.read_text() == "1\n"
    assert "event=track_file_written" in caplog.text
    assert not [p for p in (tmp_path / "d").iterdir() if p.name != "track"]  # no temp left


def test_track_file_prepare_fails_on_unwritable_path():
    with pytest.raises(OSError):
        TrackFile.prepare(Path("/proc/no/such/track"))


def test_hook_spec_validation():
    assert HookSpec(argv=("/bin/true",)).label == "true"
    assert HookSpec(argv=("/bin/true",), on=("red",)).wants(Verdict.RED)
    assert not HookSpec(argv=("/bin/true",), on=("red",)).wants(Verdict.GREEN)
    for bad in ({"argv": ()}, {"argv": ("",)}, {"argv": ("x",), "on": ("blue",)},
                {"argv": ("x",), "timeout_s": 0}, {"argv": ("x",), "shell": True}):  # fmt: skip
        with pytest.raises(ValidationError):
            HookSpec(**bad)


async def test_hook_changes_are_coalesced_to_the_latest(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "h.sh"
    script.write_text(f'#!/bin/sh\necho "$SIPWATCH_OLD_VERDICT>$SIPWATCH_NEW_VERDICT" >> {out}\n'
                      "sleep 0.3\n")  # fmt: skip
    script.chmod(0o755)
    runner = HookRunner(HookSpec(argv=(str(script),)), "n1")
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    runner.changed(Verdict.GREEN, decision("red"))
    await asyncio.sleep(0.1)  # running green>red; two more changes arrive meanwhile
    runner.changed(Verdict.RED, decision("green"))
    runner.changed(Verdict.GREEN, decision("yellow"))
    await asyncio.sleep(1.0)  # ... and run as one: red>yellow
    runner.changed(Verdict.YELLOW, decision("red"))
    runner.changed(Verdict.RED, decision("yellow"))  # ends where it started: nothing runs
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert out.read_text().split() == ["green>red", "red>yellow"]
