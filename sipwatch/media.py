"""The media half of a probe call: send RTP for `media_s`, count what comes back.

Owns: one UDP socket per call used for sending and receiving alike (symmetric RTP, RFC 4961:
the far end, an echoing IVR or sipp -rtp_echo, answers to where the packets came from), the
asyncio pacing loop, and the filter that only counts packets from the address and port the
SDP answer gave. Packets from anywhere else are counted as `unexpected_source` and are never
media: a stray or hostile sender must not make a silent call look healthy.
Must not know: SIP, SDP parsing, probe outcomes. The packet format and the statistics are
the sans-IO `sipwatch.sip.rtp`.

Bounded: `run()` returns at most `media_s + drain_s` (plus one scheduler tick) after it
starts, or as soon as `stop` is set (the far end sent BYE).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sipwatch.sip.rtp import (
    PCMU_SILENCE,
    PTIME_S,
    SAMPLES_PER_PACKET,
    Pacer,
    ReceiveStats,
    RtpError,
    RtpPacket,
    parse_rtp,
)

DEFAULT_DRAIN_S = 0.2  # after the last packet: the echo of the last ones is still in flight
MAX_DATAGRAM = 2048  # far above 12 + 160; a larger datagram is not our media


@dataclass(frozen=True, slots=True)
class MediaReport:
    """What one media run saw. Loss, jitter and gap are over the packets that came back
    from the answered address (`received`)."""

    sent: int
    received: int
    lost: int
    loss_pct: float
    jitter_ms: float
    max_gap_ms: float
    duplicates: int = 0
    out_of_order: int = 0
    ssrc_changes: int = 0
    late_slots: int = 0  # our own sender fell behind (a loaded host), not the network's fault
    unexpected_source: int = 0  # RTP from another address/port: not counted as media
    unexpected_from: str = ""  # the last such source, for the detail
    malformed: int = 0  # datagrams from the answered address that are not RTP
    early: int = 0  # datagrams before the run started (the far end's early media)
    send_errors: int = 0
    icmp_errors: int = 0  # e.g. port unreachable: the far end's media port is closed
    first_rtp_ms: float | None = None  # first send -> first packet back
    stopped_early: bool = False  # `stop` was set before media_s passed
    echoed: bool = False  # everything that came back carried our SSRC (an echo)

    @property
    def round_trip_loss_pct(self) -> float | None:
        """For an echo: the share of what we sent that never came back (the tail too, which
        the §A.3 count, bounded by the highest sequence number received, cannot see)."""
        if not self.echoed or not self.sent:
            return None
        return round(100.0 * max(0, self.sent - self.received) / self.sent, 2)


def _normalise(host: str) -> str:
    """An address as `ipaddress` prints it; IPv4-mapped IPv6 as IPv4; no scope id."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _show(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class _Receiver:
    clock: Callable[[], float]
    remote: tuple[str, int] | None = None
    stats: ReceiveStats = field(default_factory=ReceiveStats)
    unexpected: int = 0
    unexpected_from: str = ""
    malformed: int = 0
    early: int = 0
    icmp_errors: int = 0
    ssrc: int | None = None  # ours
    foreign_ssrc: int = 0  # counted packets whose SSRC is not ours: the far end's own stream

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self.clock()
        if self.remote is None:
            self.early += 1
            return
        source = (_normalise(addr[0]), addr[1])
        if source != self.remote:
            self.unexpected += 1
            self.unexpected_from = _show(source)
            return
        if len(data) > MAX_DATAGRAM:
            self.malformed += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.malformed += 1
            return
        if packet.ssrc != self.ssrc:
            self.foreign_ssrc += 1
        self.stats.add(packet, now)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: _Receiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        # asyncio gives (host, port) for IPv4 and (host, port, flowinfo, scope) for IPv6.
        self.receiver.datagram(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        self.receiver.icmp_errors += 1


class RtpEndpoint:
    """A bound UDP socket for one call's media. Open it before the INVITE (its port goes
    into the SDP offer), `run()` once the answer is in, `close()` on every exit path."""

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        receiver: _Receiver,
        clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._receiver = receiver
        self._clock = clock

    @classmethod
    async def open(
        cls, host: str, port: int = 0, *, clock: Callable[[], float] = time.monotonic
    ) -> RtpEndpoint:
        """Bind `host:port` (0: any free port). OSError if it cannot be bound."""
        receiver = _Receiver(clock)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(receiver), local_addr=(host, port)
        )
        return cls(transport, receiver, clock)

    @property
    def local_address(self) -> tuple[str, int]:
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    def close(self) -> None:
        self._transport.close()

    async def __aenter__(self) -> RtpEndpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def run(
        self,
        remote: tuple[str, int],
        media_s: float,
        *,
        drain_s: float = DEFAULT_DRAIN_S,
        stop: asyncio.Event | None = None,
        ssrc: int | None = None,
        payload_type: int = 0,
    ) -> MediaReport:
        """Send PCMU silence every 20 ms to `remote` for `media_s`, then wait `drain_s` for
        the echo of the last packets; count what `remote` sends back meanwhile."""
        if media_s < 0 or drain_s < 0:
            raise ValueError("media_s and drain_s must be >= 0")
        receiver = self._receiver
        receiver.remote = (_normalise(remote[0]), remote[1])
        rand = int.from_bytes(os.urandom(10))
        # RFC 3550 §5.1: random initial sequence number, timestamp and SSRC.
        seq0, ts0 = rand & 0xFFFF, (rand >> 16) & 0xFFFFFFFF
        ssrc = (rand >> 48) & 0xFFFFFFFF if ssrc is None else ssrc
        receiver.ssrc = ssrc
        start = self._clock()
        pacer = Pacer(start, round(media_s / PTIME_S))
        sent = send_errors = 0
        stopped = False
        while (due := pacer.next_due()) is not None:
            if stop is not None and stop.is_set():
                stopped = True
                break
            now = self._clock()
            if now < due:
                await asyncio.sleep(due - now)
                continue
            slot = pacer.take(now)
            if slot is None:
                continue
            packet = RtpPacket(
                payload_type,
                (seq0 + sent) & 0xFFFF,
                (ts0 + slot * SAMPLES_PER_PACKET) & 0xFFFFFFFF,
                ssrc,
                PCMU_SILENCE,
                marker=sent == 0,  # RFC 3551 §4.1: the first packet of a talkspurt
            )
            try:
                self._transport.sendto(packet.to_bytes(), remote)
            except OSError:
                send_errors += 1
            else:
                sent += 1
        if not stopped:
            end = self._clock() + drain_s
            while (left := end - self._clock()) > 0:
                if stop is not None and stop.is_set():
                    break
                await asyncio.sleep(min(left, PTIME_S))
        stats = receiver.stats
        first = stats.first_arrival_s
        return MediaReport(
            sent=sent,
            received=stats.received,
            lost=stats.lost,
            loss_pct=round(stats.loss_pct, 2),
            jitter_ms=round(stats.jitter_ms, 3),
            max_gap_ms=round(stats.max_gap_ms, 1),
            duplicates=stats.duplicates,
            out_of_order=stats.out_of_order,
            ssrc_changes=stats.ssrc_changes,
            late_slots=pacer.late_slots,
            unexpected_source=receiver.unexpected,
            unexpected_from=receiver.unexpected_from,
            malformed=receiver.malformed,
            early=receiver.early,
            send_errors=send_errors,
            icmp_errors=receiver.icmp_errors,
            first_rtp_ms=None if first is None else round(1000 * (first - start), 1),
            stopped_early=stopped,
            echoed=stats.received > 0 and receiver.foreign_ssrc == 0,
        )
