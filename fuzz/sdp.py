"""The call probe's media inputs from the network: an SDP answer through `parse_answer`, and
the same bytes as an RTP packet through `parse_rtp` and, when it parses, into the receive
statistics (RFC 3550 A.8 jitter, loss, gaps) twice, the second time a packet later. Allowed:
SdpError (StreamRejected included) and RtpError, both SipParseError."""

from __future__ import annotations

import contextlib

from sipwatch.errors import SipParseError
from sipwatch.sip.rtp import ReceiveStats, parse_rtp
from sipwatch.sip.sdp import parse_answer


def TestOneInput(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        answer = parse_answer(data)
        assert 0 < answer.port < 65536 and answer.address
    try:
        packet = parse_rtp(data)
    except SipParseError:
        return
    stats = ReceiveStats()
    stats.add(packet, 1.0)
    stats.add(packet, 1.02)
