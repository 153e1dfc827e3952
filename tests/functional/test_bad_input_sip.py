"""SIP from the network that is too big, lies or never ends (issue 17 §3, docs/bad-input.md).

Each test is one row of the table: a peer on the loopback (an asyncio server in the test,
answering with `testbed.hostile.answer`, the rig's independent reply builder, then breaking
the reply) and what `sip_options` must report, through both drivers: an outcome, never an
exception, and never later than the probe's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.sip_options import SipOptionsSpec
from sipwatch.sip.transaction import Timers
from testbed.hostile import answer

pytestmark = pytest.mark.peers
CTX = ProbeContext(timers=Timers(t1_s=0.5))
DEADLINE_S = 1.0
#: The largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP).
UDP_MAX = 65_507

Reply = Callable[[bytes, tuple[str, int]], list[bytes]]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, reply: Reply, sender: list[asyncio.DatagramTransport]) -> None:
        self.reply = reply
        self.sender = sender  # empty: answer from this socket; else from that one

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.sender[0] if self.sender else self.transport
        for datagram in self.reply(data, addr):
            out.sendto(datagram, addr)


@contextlib.asynccontextmanager
async def udp_peer(reply: Reply, *, other_source: bool = False) -> AsyncIterator[str]:
    """A UDP peer; `other_source`: its answers leave from another port (RFC 3261 §18.1.2)."""
    loop = asyncio.get_running_loop()
    sender: list[asyncio.DatagramTransport] = []
    if other_source:
        other, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        sender.append(other)
    tx, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(reply, sender), local_addr=("127.0.0.1", 0)
    )
    try:
        yield f"sip:127.0.0.1:{tx.get_extra_info('sockname')[1]}"
    finally:
        tx.close()
        for s in sender:
            s.close()


Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_peer(handle: Handler) -> AsyncIterator[str]:
    """A TCP peer: reads one request head, then `handle(request, writer)`; every connection
    is closed when the block ends."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            request = await reader.readuntil(b"\r\n\r\n")
            await handle(request, writer)
            await writer.drain()
            await asyncio.sleep(30)  # hold the connection open; cancelled at the end

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"sip:127.0.0.1:{server.sockets[0].getsockname()[1]};transport=tcp"
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


async def probe(run, uri: str) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = await run(SipOptionsSpec(uri=uri, timeout_s=DEADLINE_S), CTX)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_S + 0.6, f"{elapsed:.2f} s: the deadline is {DEADLINE_S} s"
    return result, elapsed


def peer(writer: asyncio.StreamWriter) -> tuple[str, int]:
    host, port = writer.get_extra_info("peername")[:2]
    return str(host), int(port)


def ok(request: bytes, source: tuple[str, int], **kw) -> bytes:
    return answer(request, source, **kw)


def with_body(reply: bytes, body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return reply.replace(b"Content-Length: 0", f"Content-Length: {n}".encode()) + body


# --- size -----------------------------------------------------------------------------------


async def test_largest_udp_datagram_with_a_valid_answer_is_ok(run):
    def reply(req, src):
        head = ok(req, src, extra=["X-Pad: " + "p" * 100])
        return [head.replace(b"p" * 100, b"p" * (100 + UDP_MAX - len(head)))]

    async with udp_peer(reply) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.OK, r


async def test_largest_udp_datagram_of_garbage_is_malformed(run):
    async with udp_peer(lambda req, src: [b"\xff" * UDP_MAX]) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.MALFORMED, r


async def test_endless_header_on_tcp_is_malformed_at_the_size_limit(run):
    async def handle(req, writer):
        writer.write(b"SIP/2.0 200 OK\r\nX-Flood: ")
        for _ in range(200):  # 1.6 MB, far past the 64 KiB limit; stopped by the close
            writer.write(b"f" * 8192)
            await writer.drain()

    async with tcp_peer(handle) as uri:
        r, elapsed = await probe(run, uri)
    assert r.outcome is Outcome.MALFORMED, r
    assert elapsed < DEADLINE_S / 2


async def test_content_length_beyond_the_limit_on_tcp_is_malformed_at_once(run):
    async def handle(req, writer):
        writer.write(with_body(ok(req, peer(writer)), b"", length=999_999))

    async with tcp_peer(handle) as uri:
        r, elapsed = await probe(run, uri)
    assert r.outcome is Outcome.MALFORMED, r
    assert elapsed < DEADLINE_S / 2


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ten_thousand_headers_are_malformed(run, transport):
    # 10,000 fit a stream; a datagram holds ~6,000 of these ("X-A: b" = 8 bytes a line).
    n = 10_000 if transport == "tcp" else 6_000
    flood = ["X-A: b"] * n

    async def handle(req, writer):
        writer.write(ok(req, peer(writer), extra=flood))

    if transport == "tcp":
        async with tcp_peer(handle) as uri:
            r, _ = await probe(run, uri)
    else:
        async with udp_peer(lambda req, src: [ok(req, src, extra=flood)]) as uri:
            r, _ = await probe(run, uri)
    assert r.outcome is Outcome.MALFORMED, r


async def test_deeply_folded_header_is_joined_and_bounded(run):
    # RFC 3261 §7.3.1: a header line may continue on lines that start with whitespace.
    folded = "Subject: a" + "\r\n b" * 6_000

    async with udp_peer(lambda req, src: [ok(req, src, extra=[folded])]) as uri:
        r, elapsed = await probe(run, uri)
    assert r.outcome is Outcome.OK, r
    assert elapsed < DEADLINE_S / 2


# --- Content-Length lying -------------------------------------------------------------------


async def test_udp_content_length_longer_than_the_datagram_is_malformed(run):
    async with udp_peer(lambda req, src: [with_body(ok(req, src), b"abc", length=100)]) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.MALFORMED, r


async def test_udp_content_length_shorter_than_the_datagram_cuts_the_body(run):
    # RFC 3261 §18.3: on UDP the octets after Content-Length are discarded.
    async with udp_peer(lambda req, src: [with_body(ok(req, src), b"x" * 50, length=3)]) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.OK, r


async def test_tcp_content_length_longer_than_what_comes_is_a_timeout_at_the_deadline(run):
    async def handle(req, writer):
        writer.write(with_body(ok(req, peer(writer)), b"abc", length=100))

    async with tcp_peer(handle) as uri:
        r, elapsed = await probe(run, uri)
    assert r.outcome is Outcome.TIMEOUT, r
    assert elapsed >= DEADLINE_S * 0.9


async def test_tcp_content_length_shorter_than_the_body_is_malformed(run):
    # The octets past Content-Length are read as the next message, which has no
    # Content-Length (mandatory on streams, §18.3): the stream is corrupt, and reported so.
    # One write on the loopback arrives as one read, the answer and the rest together.
    async def handle(req, writer):
        writer.write(with_body(ok(req, peer(writer)), b"abc" + b"\x00garbage\r\n\r\n", 3))

    async with tcp_peer(handle) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.MALFORMED, r
    assert "Content-Length" in r.detail


# --- NUL bytes ------------------------------------------------------------------------------


async def test_nul_byte_in_a_header_is_malformed(run):
    edits = [(r"Server: ", "Server: a\x00b ")]
    async with udp_peer(lambda req, src: [ok(req, src, edits=edits)]) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.MALFORMED, r
    assert "NUL" in r.detail


async def test_nul_bytes_in_a_counted_body_are_fine(run):
    async with udp_peer(lambda req, src: [with_body(ok(req, src), b"\x00" * 16)]) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.OK, r


# --- responses that are not ours ------------------------------------------------------------


def _other_branch(reply: bytes) -> bytes:
    return re.sub(rb"branch=z9hG4bK[^;\r\n]*", b"branch=z9hG4bKnot-yours", reply, count=1)


async def test_answer_to_another_branch_only_is_a_timeout(run):
    async with udp_peer(lambda req, src: [_other_branch(ok(req, src))]) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.TIMEOUT, r


async def test_answers_to_other_branches_first_do_not_hide_ours(run):
    def reply(req, src):
        wrong = _other_branch(ok(req, src, status="500 Not Yours"))
        return [wrong] * 20 + [ok(req, src)]

    async with udp_peer(reply) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.OK, r


async def test_answer_with_our_branch_and_another_call_id_is_taken(run):
    # RFC 3261 §17.1.3 matches a response to its client transaction by the top Via branch
    # and the CSeq method only; the Call-ID is not part of it (the branch is unique).
    def reply(req, src):
        return [re.sub(rb"Call-ID: [^\r\n]+", b"Call-ID: other@x", ok(req, src), count=1)]

    async with udp_peer(reply) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.OK, r


async def test_answer_from_another_source_address_is_not_seen(run):
    # RFC 3261 §18.1.2 does not require the source to match; sipwatch connects its UDP
    # socket to the target so that ICMP port unreachable reaches it (refused at once), and
    # the kernel then drops datagrams from any other address: a PBX answering from another
    # address than the one probed reads as silent.
    async with udp_peer(lambda req, src: [ok(req, src)], other_source=True) as uri:
        r, _ = await probe(run, uri)
    assert r.outcome is Outcome.TIMEOUT, r


# --- ICMP, silence, trickling ---------------------------------------------------------------


async def test_port_unreachable_storm_is_refused_at_once_and_leaks_nothing(closed_udp_port):
    from sipwatch.probes import run_probe

    fds = len(os.listdir("/proc/self/fd"))
    spec = SipOptionsSpec(uri=f"sip:127.0.0.1:{closed_udp_port}", timeout_s=DEADLINE_S)
    started = time.monotonic()
    results = await asyncio.gather(*(run_probe(spec, CTX) for _ in range(300)))
    elapsed = time.monotonic() - started
    assert {r.outcome for r in results} == {Outcome.REFUSED}
    assert elapsed < DEADLINE_S, f"{elapsed:.2f} s for 300 refusals"
    assert len(os.listdir("/proc/self/fd")) <= fds + 2


async def test_tcp_peer_that_accepts_and_never_answers_is_a_timeout_at_the_deadline(run):
    async def handle(req, writer):
        return None

    async with tcp_peer(handle) as uri:
        r, elapsed = await probe(run, uri)
    assert r.outcome is Outcome.TIMEOUT, r
    assert elapsed >= DEADLINE_S * 0.9


async def test_tcp_peer_trickling_a_byte_a_second_does_not_extend_the_deadline(run):
    async def handle(req, writer):
        for byte in ok(req, peer(writer)):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)  # the peer's pace (a byte each 0.3 s), not a sync

    async with tcp_peer(handle) as uri:
        r, elapsed = await probe(run, uri)
    assert r.outcome is Outcome.TIMEOUT, r
    assert elapsed >= DEADLINE_S * 0.9
