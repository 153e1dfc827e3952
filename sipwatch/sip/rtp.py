"""RTP for a probe call (RFC 3550), sans-IO: packet build and parse, and the receive
statistics a probe reports (loss per §A.3, interarrival jitter per §A.8, the largest gap).

Owns: the 12-byte fixed header (plus CSRCs, extension and padding when parsing), extended
sequence numbers (§A.1), and the counts. Must not know: sockets, asyncio, the clock (every
arrival is given its time), SDP or SIP. The asyncio sender/receiver is `sipwatch.media`.

Hand-written: the fixed header is one struct and the appendix algorithms a few dozen lines;
the PyPI packages either pull a WebRTC stack with FFmpeg (aiortc), read the clock inside
their statistics (so they cannot be tested without sleeping), or are unmaintained 0.0.x.

Every failure to parse raises RtpError and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sipwatch.errors import SipParseError

VERSION = 2
HEADER = struct.Struct("!BBHII")
PCMU_CLOCK_HZ = 8000
PTIME_S = 0.020
SAMPLES_PER_PACKET = int(PCMU_CLOCK_HZ * PTIME_S)  # 160 bytes of PCMU per 20 ms
PCMU_SILENCE = b"\xff" * SAMPLES_PER_PACKET  # G.711 mu-law 0xFF: zero amplitude
MAX_DROPOUT = 3000  # §A.1
MAX_MISORDER = 100  # §A.1
_SEQ_MOD = 1 << 16
_DUP_WINDOW = 1024  # extended sequence numbers remembered to tell duplicates


class RtpError(SipParseError):
    """A datagram that is not an RTP packet (RFC 3550 §5.1)."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError("payload_type must be 0-127")
        if not 0 <= self.sequence < _SEQ_MOD:
            raise ValueError("sequence must be 0-65535")
        if not 0 <= self.timestamp < 1 << 32 or not 0 <= self.ssrc < 1 << 32:
            raise ValueError("timestamp and ssrc are 32-bit unsigned")

    def to_bytes(self) -> bytes:
        first = VERSION << 6  # no padding, no extension, no CSRC
        second = (0x80 if self.marker else 0) | self.payload_type
        return HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc) + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet (§5.1). CSRCs and a header extension are skipped, padding is
    removed. RTCP multiplexed on the port (RFC 5761 §4: packet types 200-204 look like
    marker + payload type 72-76) is refused."""
    if len(data) < HEADER.size:
        raise RtpError(f"{len(data)} bytes: shorter than the 12-byte RTP header")
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != VERSION:
        raise RtpError(f"RTP version {first >> 6}, want 2")
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:
        raise RtpError(f"payload type {payload_type}: RTCP, not RTP (RFC 5761 §4)")
    offset = HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # §5.3.1: 16-bit profile id, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:  # §5.1: the last octet counts the padding, itself included
        pad = data[-1] if data else 0
        if pad == 0 or end - pad < offset:
            raise RtpError(f"bad padding count {pad}")
        end -= pad
    if offset > end:
        raise RtpError("CSRC list or extension runs past the end of the packet")
    return RtpPacket(payload_type, sequence, timestamp, ssrc, data[offset:end], bool(second & 0x80))


@dataclass(slots=True)
class ReceiveStats:
    """What came back, from one source, one packet at a time (`add(packet, arrival_s)`).

    - `received`: distinct packets; duplicates are counted apart, not as received.
    - `expected`: from the extended highest sequence number (§A.3), per SSRC: a new SSRC (the
      far end restarted its stream, e.g. after a failover) starts a new count, and the old
      one is kept in the totals.
    - `jitter_ms`: §A.8, in arrival order, with the payload's clock (8 kHz for PCMU).
    - `max_gap_ms`: the largest time between two arrivals.
    """

    clock_hz: int = PCMU_CLOCK_HZ
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0  # arrived after a higher sequence number
    ssrc_changes: int = 0
    first_arrival_s: float | None = None
    last_arrival_s: float | None = None
    max_gap_s: float = 0.0
    _jitter: float = 0.0  # in timestamp units (§A.8: J)
    _transit: float | None = None
    _ssrc: int | None = None
    _base: int = 0  # extended sequence number of the first packet of this SSRC
    _max: int = 0  # extended highest sequence number seen
    _bad_seq: int | None = None  # §A.1: a big jump, waiting for the next to confirm it
    _closed_expected: int = 0  # expected of the SSRCs before this one
    _seen: set[int] = field(default_factory=set)

    def add(self, packet: RtpPacket, arrival_s: float) -> None:
        if self._ssrc != packet.ssrc:
            if self._ssrc is not None:
                self.ssrc_changes += 1
                self._closed_expected += self._max - self._base + 1
            self._restart(packet)
        elif not self._update_seq(packet.sequence):
            return  # a duplicate, or a jump not yet confirmed
        self.received += 1
        if self.last_arrival_s is not None:
            self.max_gap_s = max(self.max_gap_s, arrival_s - self.last_arrival_s)
        if self.first_arrival_s is None:
            self.first_arrival_s = arrival_s
        self.last_arrival_s = arrival_s
        # §A.8: transit = arrival (in timestamp units) - timestamp; J += (|D| - J) / 16.
        transit = arrival_s * self.clock_hz - packet.timestamp
        if self._transit is not None:
            d = transit - self._transit
            # Timestamps wrap at 2**32: a difference that big is a wrap, not network delay.
            if d > 1 << 31:
                d -= 1 << 32
            elif d < -(1 << 31):
                d += 1 << 32
            self._jitter += (abs(d) - self._jitter) / 16
        self._transit = transit

    def _restart(self, packet: RtpPacket) -> None:
        self._ssrc = packet.ssrc
        self._base = self._max = packet.sequence
        self._bad_seq = None
        self._transit = None  # §A.8 is per source: another SSRC has another clock origin
        self._seen = {packet.sequence}

    def _update_seq(self, seq: int) -> bool:
        """§A.1 with extended numbers; True if the packet counts as received."""
        cycles, max_seq = divmod(self._max, _SEQ_MOD)
        udelta = (seq - max_seq) % _SEQ_MOD
        if udelta < MAX_DROPOUT:  # in order, with a permissible gap
            if seq < max_seq:
                cycles += 1  # wrapped
            ext = cycles * _SEQ_MOD + seq
            self._max = ext
        elif udelta <= _SEQ_MOD - MAX_MISORDER:  # a very large jump
            if self._bad_seq is not None and seq == self._bad_seq:
                # Two sequential packets: the sender restarted its numbering (§A.1).
                self._closed_expected += self._max - self._base + 1
                self._base = self._max = seq
                self._seen = {seq}
                self._bad_seq = None
                return True
            self._bad_seq = (seq + 1) % _SEQ_MOD
            return False
        else:  # duplicate or reordered, within MAX_MISORDER behind
            ext = cycles * _SEQ_MOD + seq
            if seq > max_seq:
                ext -= _SEQ_MOD
            if ext < self._base:
                self._base = ext  # reordered before the first: extends the expected range
        if udelta == 0 or ext in self._seen:
            self.duplicates += 1
            return False
        if ext < self._max:
            self.out_of_order += 1
        self._seen.add(ext)
        if len(self._seen) > 2 * _DUP_WINDOW:  # trimmed now and then, not per packet
            floor = self._max - _DUP_WINDOW
            self._seen = {s for s in self._seen if s > floor}
        self._bad_seq = None
        return True

    @property
    def expected(self) -> int:
        current = self._max - self._base + 1 if self._ssrc is not None else 0
        return self._closed_expected + current

    @property
    def lost(self) -> int:
        """§A.3: expected - received, never below 0 (duplicates are not counted here)."""
        return max(0, self.expected - self.received)

    @property
    def loss_pct(self) -> float:
        return 100.0 * self.lost / self.expected if self.expected else 0.0

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self._jitter / self.clock_hz

    @property
    def max_gap_ms(self) -> float:
        return 1000.0 * self.max_gap_s


@dataclass(slots=True)
class Pacer:
    """When to send packet slots of `ptime_s` from `start_s`, against a monotonic clock:
    slot n is due at start_s + n * ptime_s, so waking late never shifts the ones after it
    (no drift). A sender that fell behind by whole slots skips them rather than bursting
    (as a real phone does: the samples are gone), and counts them in `late_slots`."""

    start_s: float
    packets: int
    ptime_s: float = PTIME_S
    slot: int = 0  # the next slot to send
    late_slots: int = 0

    def next_due(self) -> float | None:
        """When the next slot is due, None once every slot is sent or skipped."""
        if self.slot >= self.packets:
            return None
        return self.start_s + self.slot * self.ptime_s

    def take(self, now: float) -> int | None:
        """The slot to send at `now` (its timestamp is slot * samples), or None: not due
        yet, or finished."""
        due = self.next_due()
        if due is None or now < due:
            return None
        current = int((now - self.start_s) / self.ptime_s)  # floor; may be slot-1 by rounding
        if current >= self.packets:
            self.late_slots += self.packets - self.slot
            self.slot = self.packets
            return None
        if current > self.slot:
            self.late_slots += current - self.slot
            self.slot = current
        taken = self.slot
        self.slot += 1
        return taken
