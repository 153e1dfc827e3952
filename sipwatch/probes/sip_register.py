"""`sip_register`: can a monitoring extension register? REGISTER with digest auth
(RFC 3261 §10, §22), then unregister with Expires: 0 unless told to keep the binding.

Owns: the REGISTER/unREGISTER pair and checking that the registrar really stored the binding
(§10.3 step 8: a 2xx lists the current bindings). A 2xx that does not list ours is
`bad_status`: the registrar answered but did not register us. A 2xx whose lifetime for our
binding (its `expires` parameter, else the Expires header) is not delta-seconds is
`malformed`; the binding is removed all the same, since the registrar may have stored it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sipwatch.errors import SipError, SipParseError
from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import (
    ProbeContext,
    SipProbeSpec,
    exchange_result,
    probe_blocking,
    probe_targets,
)
from sipwatch.probes.kind import ProbeKind
from sipwatch.sip.flows import (
    Flow,
    NewDeadline,
    RequestFactory,
    SentBy,
    new_call_id,
    new_tag,
    with_auth,
)
from sipwatch.sip.message import (
    Request,
    Response,
    build_request,
    contact_expires_s,
    format_hostport,
)
from sipwatch.sip.target import Target
from sipwatch.sip.uri import SipUri, parse_uri

METHOD = "REGISTER"


@dataclass(frozen=True, kw_only=True, slots=True)
class SipRegisterSpec(SipProbeSpec):
    """`uri` is the address of record (sip:monitor@pbx.example.com). The REGISTER goes to
    `registrar` when given, else to the AOR's host (RFC 3261 §10.2: Request-URI without user).
    """

    kind: Literal["sip_register"] = "sip_register"
    registrar: str | None = None
    expires_s: int = 60
    keep_registration: bool = False

    def __post_init__(self) -> None:
        SipProbeSpec.__post_init__(self)
        if self.parsed_uri.user is None:
            raise ValueError("the address of record needs a user part (sip:user@domain)")
        if not 0 < self.expires_s <= 86400:
            raise ValueError("expires_s must be between 1 and 86400")
        if self.registrar is not None:
            try:
                parse_uri(self.registrar)
            except SipError as exc:
                raise ValueError(f"registrar: {exc}") from None

    @property
    def next_hop(self) -> SipUri:
        """The REGISTER goes to the outbound proxy, else the registrar, else the AOR's host
        (what the class docstring promises; RFC 3261 §10.2)."""
        return self.parsed_proxy or self.registrar_uri

    @property
    def registrar_uri(self) -> SipUri:
        if self.registrar is not None:
            return parse_uri(self.registrar)
        aor = self.parsed_uri
        return SipUri(aor.host, aor.scheme, None, aor.port, aor.params)


def _binding_listed(response: Response, contact_uri: str) -> bool:
    """Does the 2xx list our Contact (user, host and port equal) with a lifetime > 0?

    The lifetime is the Contact's `expires` parameter, else the Expires header (RFC 3261
    §10.2.4); one that is not delta-seconds raises SipParseError. Contacts that do not parse
    as SIP URIs (other user agents' bindings, tel: URIs...) cannot be ours and are skipped:
    ports are ASCII digits only, so a Unicode one cannot pass for ours either.
    """
    want = parse_uri(contact_uri)
    for value in response.header_all("Contact"):
        uri_text = value.split("<", 1)[1].split(">", 1)[0] if "<" in value else value
        try:
            got = parse_uri(uri_text.split(";", 1)[0] if "<" not in value else uri_text)
        except SipError:
            continue
        if (got.user, got.host, got.port or 5060) != (want.user, want.host, want.port or 5060):
            continue
        expires = contact_expires_s(value)
        if expires is None:
            expires = response.expires_s()
        if expires != 0:  # None: no lifetime given at all, the registrar's default applies
            return True
    return False


def flow(
    spec: SipRegisterSpec, ctx: ProbeContext, target: Target, transport: str, local: SentBy
) -> Flow[ProbeResult]:
    aor = spec.parsed_uri.without_params()
    registrar = spec.registrar_uri
    request_uri = str(registrar.without_params() if registrar.transport is None else registrar)
    credentials = spec.credentials()
    call_id, tag = new_call_id(), new_tag()  # §10.2.4: one Call-ID for the UA's REGISTERs
    # RFC 7118 §5.2: a WebSocket Contact says transport=ws, over WSS too (the sips scheme,
    # not the parameter, says "secure").
    tparam = {"udp": "", "wss": ";transport=ws"}.get(transport, f";transport={transport}")
    contact = f"sip:{aor.user}@{format_hostport(*local)}{tparam}"

    def make(expires: int) -> RequestFactory:
        def factory(cseq: int, branch: str, extra: Sequence[tuple[str, str]]) -> Request:
            return build_request(
                METHOD,
                request_uri,
                transport=transport,
                local=local,
                from_uri=str(aor),
                to_uri=str(aor),
                call_id=call_id,
                from_tag=tag,
                cseq=cseq,
                branch=branch,
                headers=(
                    *spec.route_headers(),
                    *extra,
                    ("Contact", f"<{contact}>"),
                    ("Expires", str(expires)),
                    ("User-Agent", ctx.user_agent),
                ),
            )

        return factory

    exchange, auth, cseq = yield from with_auth(
        make(spec.expires_s), method=METHOD, uri=request_uri, credentials=credentials
    )
    result = exchange_result(spec, target, exchange, extra={"contact": contact})
    response = exchange.response
    if response is not None and response.status_code in (401, 407):
        why = (
            "credentials rejected"
            if auth.rejected
            else f"cannot answer the challenge: {auth.error}"
            if auth.error
            else "authentication required and no credentials configured"
        )
        return replace(result, outcome=Outcome.BAD_STATUS, detail=why)
    if result.outcome is not Outcome.OK or response is None:
        return result
    unreadable: str | None = None  # why the 2xx could not be read, if it could not
    if 200 <= response.status_code < 300:
        try:
            listed = _binding_listed(response, contact)
        except SipParseError as exc:
            unreadable = f"unreadable 2xx to REGISTER: {exc}"
        else:
            if not listed:
                return replace(
                    result,
                    outcome=Outcome.BAD_STATUS,
                    detail="2xx did not list our binding: the registrar did not store it",
                )
    if spec.keep_registration:
        if unreadable is not None:
            return replace(result, outcome=Outcome.MALFORMED, detail=f"{unreadable} (kept)")
        return replace(result, detail=f"registered for {spec.expires_s} s (kept)")
    # The unregister gets a budget of its own: a slow REGISTER must not leave a binding.
    yield NewDeadline(spec.timeout_s)
    unreg, _, _ = yield from with_auth(
        make(0), method=METHOD, uri=request_uri, credentials=credentials, first_cseq=cseq + 1
    )
    if unreg.response is not None and 200 <= unreg.response.status_code < 300:
        note = "registered and unregistered"
    elif unreg.response is not None:
        note = f"unregister answered {unreg.response.status_code} {unreg.response.reason}"
    else:
        note = f"unregister failed: {unreg.failure} {unreg.detail}".strip()
    if unreadable is not None:
        return replace(result, outcome=Outcome.MALFORMED, detail=f"{unreadable}; {note}")
    return replace(result, detail=note)


async def probe(spec: SipRegisterSpec, ctx: ProbeContext) -> ProbeResult:
    return await probe_targets(spec, ctx, METHOD, lambda t, tr, lo: flow(spec, ctx, t, tr, lo))


def probe_now(spec: SipRegisterSpec, ctx: ProbeContext) -> ProbeResult | None:
    """Blocking, asyncio-free run for one-shot use; None if the URI needs DNS."""
    return probe_blocking(spec, ctx, METHOD, lambda t, tr, lo: flow(spec, ctx, t, tr, lo))


KIND = ProbeKind(name="sip_register", spec=SipRegisterSpec, probe=probe, probe_now=probe_now)
