"""Locating SIP servers (RFC 3263 §4): from a SIP/SIPS URI to an ordered list of targets.

Owns: the DNS half of sending a request — transport selection (RFC 3263 §4.1), NAPTR → SRV →
A/AAAA lookups (§4.1, §4.2), SRV ordering (RFC 2782) and the translation of dnspython errors
into `ResolveError`. Must not know: SIP sockets, messages or transactions; a `Target` is only
an address to try, in order.

The pure steps (`select_transport`, `select_naptr`, `srv_queries`, `order_srv`) take plain
values and are tested without DNS; `resolve` is the thin asyncio driver around them, built on
`dns.asyncresolver` and bounded as a whole by `ResolverConfig.timeout_s`.

Choices where the RFCs leave room (each is also noted next to its code):
- All usable NAPTR services are kept, in (order, preference) order, instead of only the most
  preferred one: a health probe wants every path a client could take (RFC 3263 §4.1).
- Without NAPTR, SRV is queried for every supported transport at once and the results are
  returned in the fixed order udp, tcp, tls (RFC 3263 §4.1 lets the client pick among the
  transports the server offers).
- Usable NAPTR records whose SRV names have no SRV records fall through to the plain SRV step.
- SRV sets whose only targets are "." mean "service decidedly not available" (RFC 2782): that
  is a `ResolveError`, not a reason to fall back to A/AAAA.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.resolver

from sipwatch.errors import ConfigError, SipError
from sipwatch.sip.target import (
    DEFAULT_PORTS,
    RFC3263_TRANSPORTS,
    SUPPORTED_TRANSPORTS,
    WS_TRANSPORTS,
    Target,
)
from sipwatch.sip.uri import SipUri

__all__ = [
    "NaptrRecord",
    "ResolveError",
    "ResolverConfig",
    "SrvQuery",
    "SrvRecord",
    "Target",
    "default_port",
    "order_srv",
    "resolve",
    "select_naptr",
    "select_transport",
    "srv_queries",
]


# RFC 3263 §4.1: the NAPTR services a SIP client understands; SIPS+D2W (WebSocket) and the
# like are not for us.
_NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
# SRV service names per transport (RFC 3263 §4.1; TLS is "_sips._tcp", RFC 3261 §26.2).
_SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}

ResolveReason = Literal[
    "nxdomain",  # the name does not exist (final A/AAAA step)
    "no_answer",  # the name exists but has no usable records
    "timeout",  # the overall deadline (ResolverConfig.timeout_s) expired
    "no_nameserver",  # every nameserver failed (refused, SERVFAIL, unreachable)
    "not_available",  # SRV target "." (RFC 2782): the service is decidedly not offered
    "no_transport",  # no transport both the URI allows and the client supports (local)
    "no_config",  # no usable resolver configuration (local)
    "dns_error",  # any other DNS failure
]

_T = TypeVar("_T")


class ResolveError(SipError):
    """RFC 3263 resolution found no target. The message says what was asked and what failed.

    `reason` is machine-readable; `is_local` is true when the fault is ours (config), not the
    remote side's, so it must never count toward failover.
    """

    def __init__(self, message: str, *, reason: ResolveReason) -> None:
        super().__init__(message)
        self.reason: ResolveReason = reason

    @property
    def is_local(self) -> bool:
        return self.reason in ("no_transport", "no_config")


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    nameservers: tuple[str, ...] = ()  # empty = the system's resolv.conf
    port: int = 53
    timeout_s: float = 2.0  # overall lifetime of one whole resolution
    transports: tuple[str, ...] = SUPPORTED_TRANSPORTS  # what the client supports
    prefer_ipv6: bool = False

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} out of range 1-65535")
        unknown = [t for t in self.transports if t not in SUPPORTED_TRANSPORTS]
        if unknown or not self.transports:
            raise ConfigError(
                f"transports must be a non-empty subset of {SUPPORTED_TRANSPORTS}, "
                f"got {self.transports}"
            )


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    """The fields of a NAPTR record (RFC 3403 §4.1) that RFC 3263 §4.1 looks at."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str  # absolute name without the trailing dot; "." for none


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """An SRV record (RFC 2782); `target` without the trailing dot, "." for none."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class SrvQuery:
    """An SRV name to look up, and the transport its targets are reached over."""

    transport: str
    name: str


# ---------------------------------------------------------------------------------------------
# Pure steps


def default_port(transport: str) -> int:
    """RFC 3261 §19.1.2: 5061 for TLS, 5060 otherwise (RFC 3263 §4.2); 80/443 for WS/WSS
    (see target.DEFAULT_PORTS)."""
    return DEFAULT_PORTS[transport]


def target_host(uri: SipUri) -> str:
    """RFC 3263 §4: TARGET is the maddr parameter if present, else the URI host."""
    maddr = uri.param("maddr")
    if maddr:
        return maddr.strip("[]").lower()
    return uri.host


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _default_transport(scheme: str, transports: Sequence[str]) -> str:
    # RFC 3263 §4.1: UDP for sip, TCP (TLS over TCP) for sips. A client without UDP uses TCP:
    # every SIP server implements both (RFC 3261 §18).
    wanted = ("tls",) if scheme == "sips" else ("udp", "tcp")
    for transport in wanted:
        if transport in transports:
            return transport
    raise ResolveError(
        f"no supported transport for a {scheme} URI: need one of {wanted}, "
        f"client supports {tuple(transports)}",
        reason="no_transport",
    )


def select_transport(uri: SipUri, transports: Sequence[str]) -> str | None:
    """Transport fixed by the URI alone (RFC 3263 §4.1), or None when DNS must choose it.

    Raises ResolveError (reason "no_transport") when the URI asks for a transport the client
    does not support, or for UDP with a SIPS URI.
    """
    asked = uri.transport
    if asked is not None:
        transport = asked
        if uri.scheme == "sips":
            # RFC 3261 §26.2: SIPS means TLS over TCP; transport=tcp is the usual way to say it.
            if asked == "udp":
                raise ResolveError(
                    f"{uri}: transport=udp is not allowed with a sips URI", reason="no_transport"
                )
            if asked == "tcp":
                transport = "tls"
            if asked == "ws":  # RFC 7118 §5.2: likewise, a sips URI over WS means WSS
                transport = "wss"
        if transport not in SUPPORTED_TRANSPORTS or transport not in transports:
            raise ResolveError(
                f"{uri}: transport {transport!r} is not supported "
                f"(client supports {tuple(transports)})",
                reason="no_transport",
            )
        return transport
    if _is_ip_literal(target_host(uri)) or uri.port is not None:
        return _default_transport(uri.scheme, transports)
    return None


def select_naptr(
    records: Iterable[NaptrRecord], scheme: str, transports: Sequence[str]
) -> list[SrvQuery]:
    """Usable NAPTR records as SRV lookups, most preferred first (RFC 3263 §4.1).

    Keeps terminal ("s" flag) records with an SIP+D2U / SIP+D2T / SIPS+D2T service for a
    transport the client supports (for sips, only SIPS+D2T), sorted by order then preference.
    """
    usable: list[tuple[int, int, SrvQuery]] = []
    for rec in records:
        transport = _NAPTR_SERVICES.get(rec.service.upper())
        if transport is None or transport not in transports:
            continue
        if scheme == "sips" and transport != "tls":
            continue  # RFC 3263 §4.1: a SIPS URI only uses SIPS+D2T
        # RFC 3403 §4.1: "s" = the replacement is an SRV name; it has no regexp.
        if rec.flags.lower() != "s" or rec.regexp or rec.replacement in ("", "."):
            continue
        usable.append((rec.order, rec.preference, SrvQuery(transport, rec.replacement)))
    usable.sort(key=lambda item: (item[0], item[1]))
    result: list[SrvQuery] = []
    for _order, _pref, query in usable:
        if query not in result:
            result.append(query)
    return result


def srv_name(transport: str, host: str) -> str:
    return f"{_SRV_PREFIX[transport]}.{host}"


def srv_queries(scheme: str, host: str, transports: Sequence[str]) -> list[SrvQuery]:
    """SRV lookups when there is no NAPTR (RFC 3263 §4.1), in the order udp, tcp, tls.

    A sips URI only looks up `_sips._tcp`.
    """
    order = ("tls",) if scheme == "sips" else RFC3263_TRANSPORTS
    return [SrvQuery(t, srv_name(t, host)) for t in order if t in transports]


def order_srv(records: Iterable[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """Order SRV records for trying, as RFC 2782 ("Usage rules") says.

    Ascending priority; within a priority, repeated weighted random selection. Records with
    target "." ("service decidedly not available") are dropped, so an all-"." set gives [].
    """
    usable = [r for r in records if r.target not in ("", ".")]
    result: list[SrvRecord] = []
    for priority in sorted({r.priority for r in usable}):
        group = [r for r in usable if r.priority == priority]
        # RFC 2782: weight-0 records go first in "any order" (shuffled here, to spread load
        # when all weights are 0); they then only win when the random number is 0.
        zeros = [r for r in group if r.weight == 0]
        rng.shuffle(zeros)
        remaining = zeros + [r for r in group if r.weight > 0]
        while remaining:
            pick = rng.randint(0, sum(r.weight for r in remaining))  # inclusive on both ends
            running = 0
            for index, rec in enumerate(remaining):
                running += rec.weight
                if running >= pick:
                    result.append(remaining.pop(index))
                    break
    return result


# ---------------------------------------------------------------------------------------------
# DNS driver


async def resolve(
    uri: SipUri, cfg: ResolverConfig, *, rng: random.Random | None = None
) -> list[Target]:
    """Resolve `uri` into targets to try, in order (RFC 3263 §4).

    Never returns an empty list: no target at all is a ResolveError. The whole resolution,
    every query included, ends within `cfg.timeout_s`.
    """
    rng = rng if rng is not None else random.Random()
    host = target_host(uri)
    transport = select_transport(uri, cfg.transports)
    if _is_ip_literal(host):
        # RFC 3263 §4.2: a numeric TARGET needs no DNS; the port is the URI's or the default.
        assert transport is not None  # select_transport always decides for IP literals
        port = uri.port if uri.port is not None else default_port(transport)
        return [Target(transport, host, port, host, via="literal")]
    lookup = _Lookup(cfg, str(uri))
    try:
        async with asyncio.timeout(cfg.timeout_s):
            targets = await lookup.run(uri, host, transport, rng)
    except TimeoutError as exc:
        waiting = ", ".join(sorted(lookup.in_flight)) or "nothing"
        raise ResolveError(
            f"cannot resolve {uri}: timeout after {cfg.timeout_s:g} s (waiting for {waiting})",
            reason="timeout",
        ) from exc
    return _dedupe(targets)


def _dedupe(targets: Iterable[Target]) -> list[Target]:
    # The same address reached by the same transport under the same name is one target, even
    # when two SRV records (or NAPTR services) lead to it; the first (most preferred) stays.
    seen: set[tuple[str, str, int, str]] = set()
    result: list[Target] = []
    for target in targets:
        key = (target.transport, target.host, target.port, target.hostname)
        if key not in seen:
            seen.add(key)
            result.append(target)
    return result


async def _gather_all(*aws: Awaitable[_T]) -> list[_T]:
    """asyncio.gather that cancels the siblings when one fails, so none is left running."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class _Lookup:
    """One resolution: the resolver, the deadline, and what was asked (for error messages)."""

    def __init__(self, cfg: ResolverConfig, asked: str) -> None:
        self._cfg = cfg
        self._asked = asked
        self._deadline = asyncio.get_running_loop().time() + cfg.timeout_s
        try:
            resolver = dns.asyncresolver.Resolver(configure=not cfg.nameservers)
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf, or no nameserver in it
            raise ResolveError(
                f"cannot resolve {asked}: no usable resolver configuration ({exc})",
                reason="no_config",
            ) from exc
        if cfg.nameservers:
            resolver.nameservers = list(cfg.nameservers)
        resolver.port = cfg.port
        # Per-attempt timeout below the overall lifetime, so one lost datagram or one dead
        # nameserver leaves time to retry; `lifetime` is set per query from the deadline.
        resolver.timeout = cfg.timeout_s / 3
        resolver.lifetime = cfg.timeout_s
        self._resolver = resolver
        self.in_flight: set[str] = set()  # queries not answered yet, for the timeout message

    async def run(
        self, uri: SipUri, host: str, transport: str | None, rng: random.Random
    ) -> list[Target]:
        if transport in WS_TRANSPORTS:
            # RFC 3263 knows no WebSocket service (no NAPTR, no SRV name; RFC 7118 adds
            # none): A/AAAA of the host, on the URI's port or the ws/wss default.
            if uri.port is not None:
                return await self._addresses(
                    host, transport, uri.port, via="+explicit-port", ws=True
                )
            return await self._addresses(host, transport, default_port(transport), via="", ws=True)
        if uri.port is not None:
            # RFC 3263 §4.2: an explicit port means no SRV (and no NAPTR, §4.1): A/AAAA only.
            assert transport is not None  # select_transport decides when a port is given
            return await self._addresses(host, transport, uri.port, via="+explicit-port")
        if transport is not None:
            # RFC 3263 §4.2: transport given, no port: SRV for that transport only.
            query = SrvQuery(transport, srv_name(transport, host))
            found = await self._srv_targets([query], rng, via="srv")
            if found is not None:
                return found
            return await self._addresses(host, transport, default_port(transport), via="")
        # RFC 3263 §4.1: neither transport nor port: NAPTR first.
        naptr = await self._query(host, "NAPTR")
        records = [
            NaptrRecord(
                rd.order,
                rd.preference,
                rd.flags.decode("ascii", "replace"),
                rd.service.decode("ascii", "replace"),
                rd.regexp.decode("ascii", "replace"),
                _name_text(rd.replacement),
            )
            for rd in naptr.rdatas
            if isinstance(rd, dns.rdtypes.IN.NAPTR.NAPTR)
        ]
        chosen = select_naptr(records, uri.scheme, self._cfg.transports)
        if chosen:
            found = await self._srv_targets(chosen, rng, via="naptr+srv")
            if found is not None:
                return found
        # RFC 3263 §4.1: no (usable) NAPTR: SRV for each transport the client supports.
        queries = srv_queries(uri.scheme, host, self._cfg.transports)
        found = await self._srv_targets(queries, rng, via="srv")
        if found is not None:
            return found
        # RFC 3263 §4.2: no SRV either: A/AAAA of TARGET on the default port.
        fallback = _default_transport(uri.scheme, self._cfg.transports)
        return await self._addresses(host, fallback, default_port(fallback), via="")

    async def _srv_targets(
        self, queries: Sequence[SrvQuery], rng: random.Random, *, via: str
    ) -> list[Target] | None:
        """Targets behind these SRV names, in order; None when none of them has SRV records."""
        answers = await _gather_all(*(self._query(q.name, "SRV") for q in queries))
        found: list[tuple[SrvQuery, list[SrvRecord]]] = []
        for query, answer in zip(queries, answers, strict=True):
            records = [
                SrvRecord(rd.priority, rd.weight, rd.port, _name_text(rd.target))
                for rd in answer.rdatas
                if isinstance(rd, dns.rdtypes.IN.SRV.SRV)
            ]
            if records:
                found.append((query, records))
        if not found:
            return None
        ordered = [(q, rec) for q, records in found for rec in order_srv(records, rng)]
        if not ordered:
            names = ", ".join(q.name for q, _ in found)
            raise ResolveError(
                f"cannot resolve {self._asked}: SRV {names}: service explicitly not available "
                '(target ".")',
                reason="not_available",
            )
        hosts = list(dict.fromkeys(rec.target for _, rec in ordered))
        resolved = await _gather_all(*(self._host_addresses(h) for h in hosts))
        by_host = {h: addrs for h, (addrs, _nx) in zip(hosts, resolved, strict=True)}
        # RFC 3263 §4.3, RFC 2782: an SRV target without addresses is skipped, not fatal.
        targets = [
            Target(q.transport, address, rec.port, rec.target, rec.priority, rec.weight, via)
            for q, rec in ordered
            if rec.port > 0  # port 0 cannot be connected to
            for address, _family in by_host[rec.target]
        ]
        if not targets:
            raise ResolveError(
                f"cannot resolve {self._asked}: no SRV target has an A or AAAA record "
                f"({', '.join(hosts)})",
                reason="no_answer",
            )
        return targets

    async def _addresses(
        self, host: str, transport: str, port: int, *, via: str, ws: bool = False
    ) -> list[Target]:
        """Targets for the A/AAAA records of `host`; none at all is a ResolveError."""
        addresses, nxdomain = await self._host_addresses(host)
        if not addresses:
            note = " (WebSocket: A/AAAA only, no NAPTR or SRV exists for it)" if ws else ""
            raise ResolveError(
                f"cannot resolve {self._asked}: A/AAAA {host}: "
                + ("NXDOMAIN" if nxdomain else "no answer")
                + note,
                reason="nxdomain" if nxdomain else "no_answer",
            )
        return [
            Target(transport, address, port, host, via=family + via)
            for address, family in addresses
        ]

    async def _host_addresses(self, host: str) -> tuple[list[tuple[str, str]], bool]:
        """(address, "a" | "aaaa") pairs of `host`, and whether both lookups said NXDOMAIN.

        A and AAAA are queried together; IPv4 comes first unless prefer_ipv6.
        """
        v4, v6 = await _gather_all(self._query(host, "A"), self._query(host, "AAAA"))
        a = [(rd.address, "a") for rd in v4.rdatas if isinstance(rd, dns.rdtypes.IN.A.A)]
        aaaa = [
            (rd.address, "aaaa") for rd in v6.rdatas if isinstance(rd, dns.rdtypes.IN.AAAA.AAAA)
        ]
        ordered = aaaa + a if self._cfg.prefer_ipv6 else a + aaaa
        return ordered, v4.nxdomain and v6.nxdomain

    async def _query(self, name: str, rdtype: str) -> _Answer:
        """One query. NXDOMAIN and no answer are empty answers; anything else is fatal."""
        what = f"{rdtype} {name}"
        # Left in `in_flight` if cancelled, so the overall timeout can say what it waited for.
        self.in_flight.add(what)
        answer = await self._ask(name, rdtype, what)
        self.in_flight.discard(what)
        return answer

    async def _ask(self, name: str, rdtype: str, what: str) -> _Answer:
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            answer = await self._resolver.resolve(
                dns.name.from_text(name),  # absolute: no search list, ever
                rdtype,
                lifetime=max(remaining, 0.001),
                search=False,
            )
        except dns.resolver.NXDOMAIN:
            return _Answer((), nxdomain=True)
        except dns.resolver.NoAnswer:
            return _Answer((), nxdomain=False)
        except dns.exception.Timeout as exc:
            raise ResolveError(
                f"cannot resolve {self._asked}: {what}: timeout after {self._cfg.timeout_s:g} s",
                reason="timeout",
            ) from exc
        except dns.resolver.NoNameservers as exc:
            raise ResolveError(
                f"cannot resolve {self._asked}: {what}: no nameserver answered ({exc})",
                reason="no_nameserver",
            ) from exc
        except dns.exception.DNSException as exc:
            raise ResolveError(
                f"cannot resolve {self._asked}: {what}: {type(exc).__name__}: {exc}",
                reason="dns_error",
            ) from exc
        return _Answer(tuple(answer), nxdomain=False)


@dataclass(frozen=True, slots=True)
class _Answer:
    rdatas: tuple[object, ...]
    nxdomain: bool


def _name_text(name: dns.name.Name) -> str:
    """Name as text without the trailing dot; the root stays "."."""
    return name.to_text(omit_final_dot=True) if len(name) > 1 else "."
