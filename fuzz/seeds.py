"""Write the seed corpora under fuzz/corpus/ that derive from files elsewhere in the repo:
the real SIP captures (tests/data/*.sip), the recorded drbdsetup documents (tests/data/drbd/),
the shipped probe sets and policies, plus a few hand-made inputs per target. Run it again
after recapturing: `python -m fuzz.seeds`. The crm_* seeds are the real tools' output on the
testbed's three-node CIB file (cibadmin, crm_mon, crm_simulate, crm_attribute of Pacemaker
2.1), recorded once and kept as they are.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
DATA = ROOT / "tests" / "data"

_HAND_MESSAGES = [
    # compact forms, folding, several Vias on one line, a Retry-After with a comment
    b"SIP/2.0 503 Service Unavailable\r\nv: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport=5060,"
    b" SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2\r\nf: <sip:a@b>;tag=1\r\nt: <sip:a@b>\r\n"
    b"i: x@y\r\nCSeq: 7\r\n OPTIONS\r\nRetry-After: 30 (maintenance);duration=60\r\nl: 0\r\n\r\n",
    # bare LF line ends, Expires, Contact expires, a body past Content-Length
    b"SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK3\nFrom: <sip:a@b>;tag=1\n"
    b"To: <sip:a@b>;tag=2\nCall-ID: c\nCSeq: 2 REGISTER\nExpires: 60\n"
    b'Contact: "x, y" <sip:a@10.0.0.1;transport=udp>;expires=60, <sip:b@c>;expires=0\n'
    b"Content-Length: 4\n\nbodyextra",
]


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def _captures() -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(DATA.glob("*.sip"))}


def main() -> None:
    captures = _captures()
    messages = {**captures, **{f"hand_{i}": m for i, m in enumerate(_HAND_MESSAGES)}}
    for stem, data in messages.items():
        _write("sip_message", f"{stem}.sip", data)
    # Framer: control byte (count of chunk sizes, small max_size flag), sizes, then the stream.
    tcp = captures["kamailio_options_200_tcp"]
    invite = captures["sipp_invite_request"]
    streams = {
        "one": tcp,
        "coalesced": tcp + b"\r\n\r\n" + invite + tcp,
        "keepalive_split": b"\r\n" + invite + b"\r\n" + tcp[:100],
    }
    for index, (name, stream) in enumerate(streams.items()):
        control = bytes([3 + (0x80 if index == 2 else 0), 0x07, 0x1F, 0x00, 0xC8])
        _write("sip_framer", f"{name}.bin", control + stream)
    # Header values: byte 0 picks the parser (sip_headers.py).
    values: list[tuple[int, bytes]] = []
    for data in captures.values():
        for line in data.split(b"\r\n"):
            header, _, value = line.partition(b": ")
            if header == b"Via":
                values.append((0, value))
            elif header == b"CSeq":
                values.append((1, value))
            elif header == b"Contact":
                values.append((2, value))
        request_uri = re.match(rb"^[A-Z]+ (\S+) SIP/2.0", data)
        if request_uri:
            values.append((4, request_uri.group(1)))
    for toml in sorted((ROOT / "probes").glob("*.toml")):
        values += [(4, m.group(1)) for m in re.finditer(rb'uri = "([^"]+)"', toml.read_bytes())]
    values += [
        (3, b"SIP/2.0/UDP a;branch=1, SIP/2.0/WSS [2001:db8::1]:443;ttl=1;maddr=239.1.1.1"),
        (4, b"sips:alice@[2001:db8::1]:5061;transport=tls;lr?subject=x"),
        (4, b"sip:127.0.0.1:5060;transport=ws;ob"),
    ]
    for choice, value in dict.fromkeys(values):
        digest = hashlib.sha1(bytes([choice]) + value).hexdigest()[:12]
        _write("sip_headers", f"{choice}_{digest}.txt", bytes([choice]) + value)
    # Digest challenges: the captured 401s, RFC 7616 §3.9.1's, several at once.
    challenges = [
        line.partition(b": ")[2]
        for data in captures.values()
        for line in data.split(b"\r\n")
        if line.startswith((b"WWW-Authenticate:", b"Proxy-Authenticate:"))
    ]
    challenges += [
        b'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        b'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        b'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", userhash=true, stale=FALSE',
        b'Digest realm="a\\"b", nonce=abc/def==, algorithm=MD5-sess, qop=auth, domain="sip:x"'
        b'\nDigest realm="r", nonce="n", algorithm=SHA-512-256-sess, qop="auth-int"',
    ]
    for index, value in enumerate(challenges):
        _write("digest", f"challenge_{index}.txt", value)
    for path in sorted((DATA / "drbd").iterdir()):
        if path.suffix in (".json", ".txt"):
            _write("drbd", path.name, path.read_bytes())
    for path in sorted((ROOT / "probes").glob("*.toml")):
        _write("config", path.name, path.read_bytes())
    _write("config", "minimal.toml", b'[[probes]]\nkind = "sip_options"\nuri = "sip:127.0.0.1"\n')
    for path in sorted((ROOT / "policies").glob("*.toml")):
        _write("policy", path.name, path.read_bytes())
    # SDP answers as the call probe gets them (sipp's IVR answer, one with the session-level
    # connection and two streams, a rejected stream), and RTP packets (PCMU; with CSRCs, an
    # extension and padding).
    sdp = [
        b"v=0\r\no=ivr 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
        b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        b"v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=video 5002 RTP/AVP 96\n"
        b"m=audio 5004 RTP/AVP 8 0 101\na=rtpmap:101 telephone-event/8000\na=sendonly\n",
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
        bytes([0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 1, 2, 3, 4]) + b"\xff" * 160,
        bytes([0xB2, 0x80, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9])
        + b"\x00" * 8
        + bytes([0xBE, 0xDE, 0, 1, 1, 2, 3, 4])
        + b"\x7f" * 20
        + b"\x00\x00\x03",
    ]
    for index, value in enumerate(sdp):
        _write("sdp", f"seed_{index}.bin", value)
    # WebSocket: control byte (0x80: the input is the upgrade answer; low 6 bits: read size),
    # then bytes. Frames from a server: unmasked text SIP, a ping, fragments, a close.
    sip = captures["kamailio_options_200_tcp"]
    text = bytes([0x81, 126]) + len(sip).to_bytes(2, "big") + sip
    frames = {
        "text": bytes([0x3F]) + text,
        "ping_fragments_close": bytes([0x05])
        + bytes([0x89, 2])
        + b"hi"
        + bytes([0x01, 3])
        + b"SIP"
        + bytes([0x80, 4])
        + b"/2.0"
        + bytes([0x88, 2, 0x03, 0xE8]),
        "refused": bytes([0x80 | 0x10]) + b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Length: 0\r\n\r\n",
        "no_subprotocol": bytes([0x80 | 0x3F]) + b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
    }
    for name, value in frames.items():
        _write("ws_frames", f"{name}.bin", value)


if __name__ == "__main__":
    main()
