"""What the SIP probes share: the spec fields, RFC 3263 targets, and outcome mapping.

Owns: turning a probe spec into concrete targets, opening a connection per target, and mapping
an Exchange (final response or failure) onto an Outcome. Each target is probed on its own and
reported on its own; the summary follows what a user agent would experience (RFC 3263 §4.3:
it tries targets in order until one answers), so the service counts as alive when the first
alive target in RFC 3263 order exists, and otherwise reports the first target's failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sipwatch.errors import (
    ConfigError,
    SecretError,
    SipError,
    SipParseError,
    SipUriError,
    TransportError,
)
from sipwatch.model import Outcome, ProbeResult
from sipwatch.numbers import ascii_int
from sipwatch.probes._memory import Closing, ProbeMemory
from sipwatch.probes.kind import check_timing
from sipwatch.sip.flows import Flow, SentBy
from sipwatch.sip.sockets import TlsOptions
from sipwatch.sip.target import (
    DEFAULT_PORTS,
    SUPPORTED_TRANSPORTS,
    WS_TRANSPORTS,
    Target,
    WsOptions,
)
from sipwatch.sip.transaction import Exchange, Timers
from sipwatch.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from sipwatch.sip.client import SipConnection
    from sipwatch.sip.digest import Credentials
    from sipwatch.sip.resolve import ResolverConfig

#: pydantic reads this when a spec is validated from config: unknown keys are errors.
FORBID_EXTRA: Any = {"extra": "forbid"}


def parse_code_ranges(specs: tuple[str, ...]) -> frozenset[int]:
    """ "2xx", "200", "200-299" -> the set of status codes they name (ASCII digits only:
    `alive_codes` and `--alive` are read like a status line, RFC 3261 §25.1)."""
    codes: set[int] = set()
    for spec in specs:
        text = spec.strip().lower()
        if len(text) == 3 and text[0] in "123456" and text[1:] == "xx":
            base = int(text[0]) * 100
            codes.update(range(base, base + 100))
        elif "-" in text:
            low_text, _, high_text = text.partition("-")
            low = _status_code(low_text.strip(), spec)
            high = _status_code(high_text.strip(), spec)
            if low > high:
                raise ValueError(f"bad status range {spec!r}: {low} is above {high}")
            codes.update(range(low, high + 1))
        else:
            codes.add(_status_code(text, spec))
    return frozenset(codes)


def _status_code(text: str, spec: str) -> int:
    try:
        return ascii_int(text, "status code", low=100, high=699, digits=3)
    except ValueError as exc:
        raise ValueError(f"bad status code {spec!r} ({exc}): use 200, 2xx or 200-299") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class SipProbeSpec:
    """Fields every SIP probe has. Durations in seconds."""

    __pydantic_config__ = FORBID_EXTRA

    uri: str
    kind: str = ""
    name: str = ""
    transport: str | None = None  # overrides the URI's (and outbound_proxy's) transport
    timeout_s: float = 2.0  # the probe deadline; Timer F is min(64*T1, this)
    interval_s: float = 5.0  # how often the daemon runs it
    alive_codes: tuple[str, ...] = ("2xx",)
    user: str | None = None  # digest username; default: the URI's user part
    password_file: str | None = None
    password_env: str | None = None
    from_uri: str | None = None
    tls_verify: bool = True
    tls_ca_file: str | None = None
    tls_server_name: str | None = None
    # Send to this SIP URI (e.g. the VIP) instead of the Request-URI's host, with a
    # `Route: <outbound_proxy;lr>` header (RFC 3261 §8.1.2, a preloaded route set).
    outbound_proxy: str | None = None
    # Bind the probe's socket to this local IP first (e.g. the VIP as source address).
    source_address: str | None = None
    # WS/WSS (RFC 7118): the HTTP path of the upgrade, and an Origin header if the server
    # checks one (browsers always send it).
    ws_path: str = "/"
    ws_origin: str | None = None
    parsed_uri: SipUri = field(init=False, repr=False, compare=False)
    alive: frozenset[int] = field(init=False, repr=False, compare=False)
    parsed_proxy: SipUri | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            uri = parse_uri(self.uri)
        except SipUriError as exc:
            raise ValueError(str(exc)) from None
        if self.transport is not None:
            transport = self.transport.lower()
            if transport not in SUPPORTED_TRANSPORTS:
                raise ValueError(
                    f"transport {self.transport!r}: want {', '.join(SUPPORTED_TRANSPORTS)}"
                )
            if uri.scheme == "sips" and transport not in ("tls", "ws", "wss"):
                # RFC 3261 §26.2; with sips, ws means WSS (RFC 7118 §5.2)
                raise ValueError("a sips: URI needs transport tls or wss (RFC 3261 §26.2)")
            params = tuple(p for p in uri.params if p[0].lower() != "transport")
            uri = SipUri(
                uri.host, uri.scheme, uri.user, uri.port, (*params, ("transport", transport))
            )
        check_timing(self.timeout_s, self.interval_s, max_timeout_s=64)
        if self.password_file and self.password_env:
            raise ValueError("give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not (self.user or uri.user):
            raise ValueError("a password needs a user (or a user part in the URI)")
        proxy = None
        if self.outbound_proxy is not None:
            try:
                proxy = parse_uri(self.outbound_proxy)
            except SipUriError as exc:
                raise ValueError(f"outbound_proxy: {exc}") from None
            if uri.scheme == "sips" and proxy.scheme != "sips":
                raise ValueError("a sips: URI needs a sips: outbound_proxy (RFC 3261 §26.2)")
            if self.transport is not None:  # `transport` names how we reach the next hop
                params = tuple(p for p in proxy.params if p[0].lower() != "transport")
                proxy = SipUri(
                    proxy.host,
                    proxy.scheme,
                    proxy.user,
                    proxy.port,
                    (*params, ("transport", self.transport.lower())),
                )
        WsOptions(self.ws_path, self.ws_origin)  # ValueError names the key
        if self.source_address is not None:
            import ipaddress

            try:
                ipaddress.ip_address(self.source_address)
            except ValueError:
                raise ValueError(
                    f"source_address {self.source_address!r} is not an IP address"
                ) from None
        object.__setattr__(self, "parsed_uri", uri)
        object.__setattr__(self, "parsed_proxy", proxy)
        object.__setattr__(self, "alive", parse_code_ranges(self.alive_codes))
        if not self.name:
            object.__setattr__(self, "name", f"{self.kind}:{uri}")

    @property
    def next_hop(self) -> SipUri:
        """Where requests are sent: the outbound proxy when set, else the URI itself."""
        return self.parsed_proxy or self.parsed_uri

    @property
    def ws_options(self) -> WsOptions:
        return WsOptions(self.ws_path, self.ws_origin)

    @property
    def local_addr(self) -> tuple[str, int] | None:
        return (self.source_address, 0) if self.source_address else None

    def route_headers(self) -> tuple[tuple[str, str], ...]:
        """`Route: <proxy;lr>` when an outbound proxy is set (RFC 3261 §8.1.2, §16.12)."""
        proxy = self.parsed_proxy
        if proxy is None:
            return ()
        params = tuple(p for p in proxy.params if p[0].lower() != "lr")
        route = SipUri(proxy.host, proxy.scheme, proxy.user, proxy.port, (*params, ("lr", None)))
        return (("Route", f"<{route}>"),)

    def credentials(self) -> Credentials | None:
        """Read the password now (so a rotated file is picked up). Raises SecretError."""
        if not (self.password_file or self.password_env):
            return None
        username = self.user or self.parsed_uri.user or ""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise SecretError(f"environment variable {self.password_env} is not set")
            from sipwatch.sip.digest import Credentials

            return Credentials(username, value)
        assert self.password_file is not None
        try:
            with open(self.password_file, encoding="utf-8") as fh:
                value = fh.readline().rstrip("\r\n")
        except OSError as exc:
            raise SecretError(
                f"cannot read password file {self.password_file}: {exc.strerror}"
            ) from None
        if not value:
            raise SecretError(f"password file {self.password_file} is empty")
        from sipwatch.sip.digest import Credentials

        return Credentials(username, value)


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What a probe gets besides its spec: protocol timers, DNS settings, identity, and the
    memory the caller keeps between runs (the daemon keeps one for its life; a one-shot run
    starts empty)."""

    timers: Timers = field(default_factory=Timers)
    resolver: ResolverConfig | None = None
    user_agent: str = "sipwatch"
    memory: ProbeMemory = field(default_factory=ProbeMemory, compare=False, repr=False)
    # Keep each target's TCP/TLS/WS/WSS connection open between runs, in `memory` (the
    # daemon: a phone keeps its connection too). One-shot runs close theirs.
    keep_connections: bool = False


class KeptConnections(Closing):
    """A probe's open stream connections between runs, by target (`str(Target)`)."""

    def __init__(self) -> None:
        self.by_target: dict[str, SipConnection] = {}

    def take(self, key: str) -> SipConnection | None:
        return self.by_target.pop(key, None)

    def put(self, key: str, conn: SipConnection) -> None:
        old = self.by_target.pop(key, None)
        if old is not None and old is not conn:
            old.close()
        self.by_target[key] = conn

    def close(self) -> None:
        for conn in self.by_target.values():
            conn.close()
        self.by_target.clear()


def kept_connections(spec: SipProbeSpec, ctx: ProbeContext) -> KeptConnections | None:
    if not ctx.keep_connections:
        return None
    return ctx.memory.slot(f"{spec.name}#connections", KeptConnections, KeptConnections)


def literal_target(uri: SipUri) -> Target | None:
    """RFC 3263 §4.1/§4.2 for an IP literal: no DNS at all. None for a hostname."""
    if not uri.is_ip_literal:
        return None
    transport = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
    if uri.scheme == "sips" and transport == "ws":
        transport = "wss"  # RFC 7118 §5.2: a sips URI over WebSocket means WSS
    port = uri.port or DEFAULT_PORTS[transport]
    return Target(transport=transport, host=uri.host, port=port, hostname=uri.host, via="literal")


async def resolve_targets(uri: SipUri, ctx: ProbeContext) -> list[Target]:
    literal = literal_target(uri)
    if literal is not None:
        return [literal]
    from sipwatch.sip.resolve import ResolverConfig, resolve

    return await resolve(uri, ctx.resolver or ResolverConfig())


def base_result(spec: SipProbeSpec, method: str, outcome: Outcome, **kw: Any) -> ProbeResult:
    return ProbeResult(
        probe=spec.name, kind=spec.kind, target=spec.uri, outcome=outcome, method=method, **kw
    )


def exchange_result(
    spec: SipProbeSpec, target: Target, exchange: Exchange, **extra: Any
) -> ProbeResult:
    """Map how a transaction ended onto an outcome."""
    common: dict[str, Any] = {
        "transport": target.transport,
        "resolved": str(target),
        "retransmissions": exchange.retransmissions,
        "rtt_ms": None if exchange.rtt_s is None else round(exchange.rtt_s * 1000, 3),
    }
    common.update(extra)
    method = exchange.request.method
    response = exchange.response
    if response is None:
        outcome = Outcome(exchange.failure or "timeout")
        return base_result(spec, method, outcome, detail=exchange.detail, **common)
    code, reason = response.status_code, response.reason
    if code in spec.alive:
        return base_result(spec, method, Outcome.OK, status_code=code, reason=reason, **common)
    try:
        retry_after = response.retry_after_s() if code == 503 else None
    except SipParseError as exc:  # a 503 whose Retry-After is not delta-seconds
        return base_result(
            spec,
            method,
            Outcome.MALFORMED,
            status_code=code,
            reason=reason,
            detail=f"{code} {reason}: {exc}",
            **common,
        )
    if retry_after is not None:
        return base_result(
            spec,
            method,
            Outcome.DRAINING,
            status_code=code,
            reason=reason,
            retry_after_s=retry_after,
            detail=f"503 with Retry-After {retry_after:g} s: draining",
            **common,
        )
    return base_result(
        spec,
        method,
        Outcome.BAD_STATUS,
        status_code=code,
        reason=reason,
        detail=f"{code} {reason} is not counted as alive",
        **common,
    )


#: What a SIP probe kind supplies: given the target and the connection's transport name and
#: Via sent-by (the local address, or a `.invalid` host on WebSocket), the flow (flows.py)
#: that probes it and returns the result.
FlowFactory = Callable[[Target, str, SentBy], Flow[ProbeResult]]


async def probe_targets(
    spec: SipProbeSpec, ctx: ProbeContext, method: str, make_flow: FlowFactory
) -> ProbeResult:
    """Resolve, probe each target concurrently with its own connection, summarise."""
    import asyncio

    try:
        targets = await asyncio.wait_for(resolve_targets(spec.next_hop, ctx), spec.timeout_s)
    except TimeoutError:
        return base_result(
            spec,
            method,
            Outcome.DNS_ERROR,
            detail=f"DNS resolution took longer than {spec.timeout_s:g} s",
        )
    except SipError as exc:
        local = getattr(exc, "is_local", False)
        outcome = Outcome.LOCAL_ERROR if local else Outcome.DNS_ERROR
        return base_result(spec, method, outcome, detail=str(exc))
    results = await asyncio.gather(*(_one_target(spec, ctx, method, t, make_flow) for t in targets))
    return summarise(list(results))


def summarise(results: list[ProbeResult]) -> ProbeResult:
    if len(results) == 1:
        return results[0]
    chosen = next((r for r in results if r.alive), results[0])
    return replace(chosen, targets=tuple(results))


def _tls(spec: SipProbeSpec) -> TlsOptions:
    return TlsOptions(
        verify=spec.tls_verify, ca_file=spec.tls_ca_file, server_name=spec.tls_server_name
    )


def _connect_failed(
    spec: SipProbeSpec, method: str, target: Target, exc: TransportError, waited_s: float
) -> ProbeResult:
    # A refused WebSocket upgrade: the HTTP status, which is not a SIP status_code.
    extra = {} if exc.http_status is None else {"http_status": exc.http_status}
    return base_result(
        spec,
        method,
        Outcome(exc.kind),
        transport=target.transport,
        resolved=str(target),
        detail=f"{exc.detail} (after {waited_s * 1000:.1f} ms)",
        extra=extra,
    )


def _local_failure(spec: SipProbeSpec, method: str, target: Target, exc: Exception) -> ProbeResult:
    return base_result(
        spec,
        method,
        Outcome.LOCAL_ERROR,
        transport=target.transport,
        resolved=str(target),
        detail=str(exc),
    )


def _malformed(spec: SipProbeSpec, method: str, target: Target, exc: SipParseError) -> ProbeResult:
    """A flow read a header of a response and it did not parse: the peer's fault, never a
    crash of the probe (nor a traceback from the one-shot CLI)."""
    return base_result(
        spec,
        method,
        Outcome.MALFORMED,
        transport=target.transport,
        resolved=str(target),
        detail=f"unparsable reply: {exc}",
    )


async def _one_target(
    spec: SipProbeSpec, ctx: ProbeContext, method: str, target: Target, make_flow: FlowFactory
) -> ProbeResult:
    import asyncio

    from sipwatch.sip.client import SipConnection

    _preload(target)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + spec.timeout_s
    kept = kept_connections(spec, ctx)
    key = str(target)
    conn = kept.take(key) if kept is not None else None
    if conn is not None and conn.dead is not None:
        # The connection kept from the last run died since: that is this run's outcome
        # (never hidden by a reconnect inside the same run); the next run opens a new one.
        kind, detail = conn.dead
        local = conn.local
        conn.close()
        broken = base_result(
            spec,
            method,
            Outcome(kind),
            transport=target.transport,
            resolved=str(target),
            detail=f"the {target.transport} connection kept from {local[0]}:{local[1]} "
            f"broke since the last run: {detail}",
            extra={"connection": "broken"},
        )
        return with_source(spec, broken, local)
    reused = conn is not None
    if conn is None:
        try:
            conn = await SipConnection.open(
                target.transport, target.host, target.port, **_connect_options(spec, ctx)
            )
        except TransportError as exc:
            return _connect_failed(spec, method, target, exc, loop.time() - started)
    else:
        conn.begin_run()
    keep = False
    try:
        flow = make_flow(target, conn.transport.name, conn.transport.sent_by)
        result = await conn.run(flow, deadline=deadline)
        # Keep only a stream that just carried an answer; after a timeout or a failure,
        # start afresh.
        keep = kept is not None and conn.reliable and conn.dead is None
        keep = keep and result.status_code is not None
    except (SecretError, ConfigError) as exc:
        result = _local_failure(spec, method, target, exc)
    except SipParseError as exc:
        result = _malformed(spec, method, target, exc)
    finally:
        if keep and kept is not None:
            kept.put(key, conn)
        else:
            conn.close()
    if kept is not None and conn.reliable:
        result = replace(result, extra=dict(result.extra, connection="reused" if reused else "new"))
    return _finish(spec, result, conn.local, conn.transport.peer_cert_not_after)


def _preload(target: Target) -> None:
    """Import what the transport needs before the probe's clock starts: importing wsproto
    (tens of ms, once) is not the peer's latency and must not eat the probe's deadline."""
    if target.transport in WS_TRANSPORTS:
        import sipwatch.sip.ws  # noqa: F401


def _connect_options(spec: SipProbeSpec, ctx: ProbeContext) -> dict[str, Any]:
    """What both drivers pass when they open a connection to a target."""
    return {
        "timeout_s": spec.timeout_s,
        "timers": ctx.timers,
        "tls": _tls(spec),
        # RFC 5922 §4: the certificate must match the domain of the URI, not the SRV
        # target's name (which DNS, not the operator, chose).
        "server_name": spec.next_hop.host,
        "local_addr": spec.local_addr,
        "ws": spec.ws_options,
    }


def _finish(
    spec: SipProbeSpec, result: ProbeResult, local: tuple[str, int], not_after: str | None
) -> ProbeResult:
    return with_tls_expiry(with_source(spec, result, local), not_after)


def probe_blocking(
    spec: SipProbeSpec, ctx: ProbeContext, method: str, make_flow: FlowFactory
) -> ProbeResult | None:
    """The same probe without asyncio, for one-shot CLI runs. Only for IP-literal URIs
    (no DNS): returns None when the URI needs resolving."""
    target = literal_target(spec.next_hop)
    if target is None:
        return None
    from sipwatch.sip.blocking import BlockingConnection

    _preload(target)
    started = time.monotonic()
    try:
        conn = BlockingConnection(
            target.transport, target.host, target.port, **_connect_options(spec, ctx)
        )
    except TransportError as exc:
        return _connect_failed(spec, method, target, exc, time.monotonic() - started)
    try:
        result = conn.run(
            make_flow(target, conn.name, conn.sent_by), deadline=started + spec.timeout_s
        )
    except (SecretError, ConfigError) as exc:
        result = _local_failure(spec, method, target, exc)
    except SipParseError as exc:
        result = _malformed(spec, method, target, exc)
    finally:
        conn.close()
    return _finish(spec, result, conn.local, conn.peer_cert_not_after)


def with_source(spec: SipProbeSpec, result: ProbeResult, local: tuple[str, int]) -> ProbeResult:
    """With `source_address` set, report the local address actually used (`extra.source`)."""
    if spec.source_address is None:
        return result
    return replace(result, extra=dict(result.extra, source=f"{local[0]}:{local[1]}"))


def with_tls_expiry(result: ProbeResult, not_after: str | None) -> ProbeResult:
    """Report the peer certificate's expiry; warn in the detail under 14 days."""
    if not_after is None:
        return result
    import ssl

    days = (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400
    extra = dict(result.extra, tls_days_left=round(days, 1))
    detail = result.detail
    if days < 14:
        note = f"TLS certificate expires in {days:.1f} days ({not_after})"
        detail = f"{detail}; {note}" if detail else note
    return replace(result, tls_not_after=not_after, extra=extra, detail=detail)
