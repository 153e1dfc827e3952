"""`sip_options`: is a SIP server answering? An OPTIONS request (RFC 3261 §11), the
conventional SIP ping, answered with a status counted as alive.

Owns: the OPTIONS flow. A server that challenges OPTIONS (some PBXes do) is answered once
with digest credentials when the spec has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sipwatch.model import ProbeResult
from sipwatch.probes._sip import (
    ProbeContext,
    SipProbeSpec,
    exchange_result,
    probe_blocking,
    probe_targets,
)
from sipwatch.probes.kind import ProbeKind
from sipwatch.sip.flows import Flow, SentBy, new_call_id, new_tag, with_auth
from sipwatch.sip.message import Request, build_request, format_hostport
from sipwatch.sip.target import Target

METHOD = "OPTIONS"


@dataclass(frozen=True, kw_only=True, slots=True)
class SipOptionsSpec(SipProbeSpec):
    kind: Literal["sip_options"] = "sip_options"


def default_from(spec: SipProbeSpec, local: SentBy) -> str:
    return spec.from_uri or f"sip:sipwatch@{format_hostport(local[0])}"


def flow(
    spec: SipProbeSpec, ctx: ProbeContext, target: Target, transport: str, local: SentBy
) -> Flow[ProbeResult]:
    uri = spec.parsed_uri
    request_uri = str(uri)
    from_uri = default_from(spec, local)
    call_id, tag = new_call_id(), new_tag()

    def factory(cseq: int, branch: str, extra: Sequence[tuple[str, str]]) -> Request:
        return build_request(
            METHOD,
            request_uri,
            transport=transport,
            local=local,
            from_uri=from_uri,
            to_uri=str(uri.without_params()),
            call_id=call_id,
            from_tag=tag,
            cseq=cseq,
            branch=branch,
            headers=(
                *spec.route_headers(),
                *extra,
                ("Accept", "application/sdp"),
                ("User-Agent", ctx.user_agent),
            ),
        )

    exchange, auth, _ = yield from with_auth(
        factory, method=METHOD, uri=request_uri, credentials=spec.credentials()
    )
    result = exchange_result(spec, target, exchange)
    if auth.rejected:
        return replace(
            result, detail="credentials rejected: challenged again after the authenticated retry"
        )
    if auth.error:
        return replace(result, detail=f"cannot answer the challenge: {auth.error}")
    return result


async def probe(spec: SipOptionsSpec, ctx: ProbeContext) -> ProbeResult:
    return await probe_targets(spec, ctx, METHOD, lambda t, tr, lo: flow(spec, ctx, t, tr, lo))


def probe_now(spec: SipOptionsSpec, ctx: ProbeContext) -> ProbeResult | None:
    """Blocking, asyncio-free run for one-shot use; None if the URI needs DNS."""
    return probe_blocking(spec, ctx, METHOD, lambda t, tr, lo: flow(spec, ctx, t, tr, lo))


KIND = ProbeKind(name="sip_options", spec=SipOptionsSpec, probe=probe, probe_now=probe_now)
