"""A resolved SIP target: transport, IP address, port (the result of RFC 3263 §4).

Kept apart from `resolve.py` so that probing an IP literal never imports dnspython: the
one-shot CLI is timed against `sipsak -s`.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class Target:
    """One address to try: transport, IP literal, port, and where it came from."""

    transport: str  # "udp" | "tcp" | "tls"
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
