"""RTP packets and RFC 3550 receive statistics (§A.1, §A.3, §A.8), and the pacer; no
sockets, no sleeping: every arrival is given its time."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwatch.sip.rtp import (
    PCMU_SILENCE,
    Pacer,
    ReceiveStats,
    RtpError,
    RtpPacket,
    parse_rtp,
)


def pkt(seq: int, ts: int | None = None, ssrc: int = 0x1234) -> RtpPacket:
    return RtpPacket(0, seq % 65536, (seq * 160 if ts is None else ts) % 2**32, ssrc, PCMU_SILENCE)


def test_build_and_parse_round_trip():
    packet = RtpPacket(0, 65535, 2**32 - 1, 0xDEADBEEF, PCMU_SILENCE, marker=True)
    data = packet.to_bytes()
    assert len(data) == 12 + 160 and data[0] == 0x80 and data[1] == 0x80
    assert parse_rtp(data) == packet


def test_parse_skips_csrc_extension_and_padding():
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 101, 7, 8, 9)
    csrcs = struct.pack("!II", 1, 2)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    data = header + csrcs + extension + b"abcd" + b"\x00\x00\x03"
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (101, 7, 8, 9)
    assert packet.payload == b"abcd"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x80\x00", "shorter"),
        (b"\x40" + b"\x00" * 11, "version 1"),
        (bytes([0x80, 0xC8]) + b"\x00" * 10, "RTCP"),
        (b"\x8f" + b"\x00" * 11, "CSRC"),
        (b"\x90" + b"\x00" * 11, "extension"),
        (b"\xa0" + b"\x00" * 11, "padding"),
        (b"\xa0" + b"\x00" * 10 + b"\x20", "padding"),
    ],
)
def test_parse_errors(data, why):
    with pytest.raises(RtpError, match=why):
        parse_rtp(data)


@given(st.binary(max_size=200))
def test_parse_raises_only_rtp_error(data):
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert packet.to_bytes()[2:12] == data[2:12]


@given(
    st.integers(0, 127).filter(lambda p: not 72 <= p <= 76),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=64),
    st.booleans(),
)
def test_round_trip_property(pt, seq, ts, ssrc, payload, marker):
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker)
    assert parse_rtp(packet.to_bytes()) == packet


def test_perfect_stream_has_no_loss_no_jitter():
    stats = ReceiveStats()
    for i in range(50):
        stats.add(pkt(1000 + i), 10.0 + 0.02 * i)
    assert (stats.received, stats.expected, stats.lost) == (50, 50, 0)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert stats.max_gap_ms == pytest.approx(20.0)


def test_loss_from_extended_highest_sequence_across_a_wrap():
    stats = ReceiveStats()
    seqs = [65530 + i for i in range(12) if i not in (3, 7)]  # two lost, wraps at 65536
    for n, seq in enumerate(seqs):
        stats.add(pkt(seq), 0.02 * n)
    assert stats.expected == 12 and stats.received == 10 and stats.lost == 2
    assert stats.loss_pct == pytest.approx(100 * 2 / 12)


def test_duplicates_and_reordering_are_tolerated():
    stats = ReceiveStats()
    order = [0, 1, 3, 2, 3, 4, 4, 5]
    for n, seq in enumerate(order):
        stats.add(pkt(seq), 0.02 * n)
    assert stats.received == 6 and stats.duplicates == 2 and stats.out_of_order == 1
    assert stats.lost == 0


def test_reordered_before_the_first_extends_the_range():
    stats = ReceiveStats()
    stats.add(pkt(5), 0.0)
    stats.add(pkt(3), 0.01)
    stats.add(pkt(6), 0.02)
    assert stats.expected == 4 and stats.lost == 1 and stats.out_of_order == 1


def test_jitter_follows_a_8():
    # Packets 20 ms apart in timestamp, arriving alternately 10 ms late: |D| = 80 units
    # every packet after the first, so J converges on 80 units = 10 ms.
    stats = ReceiveStats()
    j = 0.0
    for i in range(200):
        late = 0.010 if i % 2 else 0.0
        stats.add(pkt(i), 0.02 * i + late)
        if i:
            j += (80 - j) / 16
    assert stats.jitter_ms == pytest.approx(1000 * j / 8000)
    assert stats.jitter_ms == pytest.approx(10.0, rel=1e-3)


def test_jitter_survives_a_timestamp_wrap():
    stats = ReceiveStats()
    for i in range(20):
        stats.add(pkt(i, ts=(2**32 - 800 + 160 * i)), 0.02 * i)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_largest_gap():
    stats = ReceiveStats()
    for n, at in enumerate([0.0, 0.02, 0.04, 0.54, 0.56]):
        stats.add(pkt(n), at)
    assert stats.max_gap_ms == pytest.approx(500.0)


def test_sequence_restart_needs_two_sequential_packets():
    stats = ReceiveStats()
    for i in range(5):
        stats.add(pkt(i), 0.02 * i)
    stats.add(pkt(40000), 0.12)  # a lone jump: not counted (§A.1 bad_seq)
    assert stats.received == 5
    stats.add(pkt(40001), 0.14)  # confirmed: a new numbering
    stats.add(pkt(40002), 0.16)
    assert stats.received == 7 and stats.expected == 5 + 2 and stats.lost == 0


def test_new_ssrc_starts_a_new_count_and_keeps_the_old_one():
    stats = ReceiveStats()
    for i in range(10):
        if i != 4:
            stats.add(pkt(i), 0.02 * i)
    for i in range(10):
        stats.add(pkt(30000 + i, ssrc=0x9999), 1.0 + 0.02 * i)
    assert stats.ssrc_changes == 1
    assert stats.expected == 20 and stats.received == 19 and stats.lost == 1
    assert stats.max_gap_ms == pytest.approx(1000 * (1.0 - 0.18))


@given(st.lists(st.tuples(st.integers(0, 65535), st.floats(0, 10)), max_size=80))
def test_statistics_never_break(arrivals):
    stats = ReceiveStats()
    for seq, at in arrivals:
        stats.add(pkt(seq), at)
    assert stats.received + stats.duplicates <= len(arrivals)
    assert stats.lost >= 0 and 0 <= stats.loss_pct <= 100
    assert stats.jitter_ms >= 0


def test_pacer_is_drift_free_and_skips_missed_slots():
    pacer = Pacer(100.0, 10)
    assert pacer.take(99.99) is None and pacer.next_due() == 100.0
    assert pacer.take(100.003) == 0  # woke 3 ms late: slot 1 is still due at 100.02
    assert pacer.next_due() == pytest.approx(100.02)
    assert pacer.take(100.021) == 1
    assert pacer.take(100.095) == 4  # stalled: slots 2 and 3 are skipped, not burst
    assert pacer.late_slots == 2
    assert pacer.next_due() == pytest.approx(100.10)
    for n in range(5, 10):
        assert pacer.take(100.0 + 0.02 * n) == n
    assert pacer.next_due() is None and pacer.take(200.0) is None


def test_pacer_past_the_end_stops():
    pacer = Pacer(0.0, 3)
    assert pacer.take(0.0) == 0
    assert pacer.take(1.0) is None and pacer.next_due() is None and pacer.late_slots == 2
