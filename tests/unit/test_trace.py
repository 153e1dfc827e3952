"""The probe trace: secrets masked when recorded, bounded, one trace per run (context)."""

from __future__ import annotations

import asyncio

from sipwatch import trace
from sipwatch.trace import MAX_EVENTS, Trace, mask, tracing

AUTH = (
    b'REGISTER sip:pbx SIP/2.0\r\nAuthorization: Digest username="monitor", realm="pbx", '
    b'nonce="abc", uri="sip:pbx", response="6629fae49393a05397450978507c4ef1", '
    b"cnonce=0a4f113b, nc=00000001, qop=auth\r\n"
    b'Proxy-Authorization: Digest RESPONSE = "deadbeef"\r\n\r\n'
)


def test_digest_response_and_cnonce_are_masked() -> None:
    masked = mask(AUTH)
    assert b"6629fae49393a05397450978507c4ef1" not in masked
    assert b"0a4f113b" not in masked and b"deadbeef" not in masked
    assert masked.count(b'="***"') == 3
    assert b'nonce="abc"' in masked and b'username="monitor"' in masked  # not secret


def test_a_trace_is_bounded_and_masks_what_it_records() -> None:
    t = Trace("p")
    t.record("sent", "udp 127.0.0.1:5060", AUTH)
    text = t.render()
    assert "6629fae4" not in text and "--> sent udp 127.0.0.1:5060" in text
    for _ in range(MAX_EVENTS + 5):
        t.record("received", "x", b"SIP/2.0 200 OK\r\n\r\n" + b"a" * 100_000)
    assert len(t.events) == MAX_EVENTS and t.dropped == 6
    assert "[... cut at 8192 bytes]" in t.events[-1].text


async def test_concurrent_runs_never_see_each_others_trace() -> None:
    async def run(name: str) -> str:
        with tracing(name):
            await asyncio.sleep(0.01)
            current = trace.current()
            assert current is not None
            return current.probe

    assert await asyncio.gather(run("a"), run("b")) == ["a", "b"]
    assert trace.current() is None
