"""A resolved SIP target: transport, IP address, port (the result of RFC 3263 §4).

Owns: the transports sipwatch speaks, whether each is reliable, and each one's default port —
declared here once for the URI checks, the resolver and both drivers — and the operator's
options for a WebSocket connection (`WsOptions`; the protocol itself is in `ws.py`, which
imports wsproto and is only loaded when a WS/WSS probe runs). Kept apart from
`resolve.py` so that probing an IP literal never imports dnspython: the one-shot CLI is timed
against `sipsak -s`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Reliable = no retransmissions, Timer K zero (RFC 3261 §17.1.2.2). WS/WSS are SIP over
#: WebSocket (RFC 7118) over TCP/TLS.
RELIABLE = {"udp": False, "tcp": True, "tls": True, "ws": True, "wss": True}
SUPPORTED_TRANSPORTS = tuple(RELIABLE)
#: Transports that RFC 3263 can select by NAPTR/SRV. WebSocket has no NAPTR service or SRV
#: name of its own in RFC 3263 or RFC 7118: its hosts resolve by A/AAAA only.
RFC3263_TRANSPORTS = ("udp", "tcp", "tls")
WS_TRANSPORTS = ("ws", "wss")
#: RFC 3261 §19.1.2 (5060, 5061 for TLS); for WS/WSS the ports of ws:// and wss:// URIs
#: (RFC 6455 §3), which is where a browser connects when it is given no port. Servers often
#: use others (PortSIP: WSS 5065; Kamailio examples: 8080/4443): give the port in the URI.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class Target:
    """One address to try: transport, IP literal, port, and where it came from."""

    transport: str  # one of SUPPORTED_TRANSPORTS
    host: str  # IP address literal (v4 or v6, no brackets)
    port: int
    hostname: str  # name the address was resolved from (SNI, reports); host for literals
    priority: int = 0  # SRV priority (0 without SRV)
    weight: int = 0
    via: str = ""  # "literal", "naptr+srv", "srv", "a", "aaaa", "a+explicit-port", ...

    def __post_init__(self) -> None:
        if self.transport not in SUPPORTED_TRANSPORTS:
            raise ValueError(f"unsupported transport {self.transport!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} out of range 1-65535")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class WsOptions:
    """What an operator may set about the upgrade request. Validated on construction."""

    path: str = "/"  # the HTTP request target of the upgrade
    origin: str | None = None  # an Origin header (RFC 6454), as a browser sends it

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or not _printable(self.path) or " " in self.path:
            raise ValueError(f"ws_path {self.path!r}: want an absolute path such as /ws")
        if self.origin is not None and (not self.origin or not _printable(self.origin)):
            raise ValueError(f"ws_origin {self.origin!r}: want printable ASCII, e.g. https://x")


def _printable(text: str) -> bool:
    return all(0x20 <= ord(ch) < 0x7F for ch in text)
