"""`sip_options`: is a SIP server answering? An OPTIONS request (RFC 3261 §11), the
conventional SIP ping, answered with a status counted as alive.

Owns: building the OPTIONS request. A server that challenges OPTIONS (some PBXes do) is
answered once with digest credentials when the spec has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sipwatch.model import ProbeResult
from sipwatch.probes._sip import ProbeContext, SipProbeSpec, exchange_result, probe_targets
from sipwatch.sip.client import SipConnection, new_call_id, new_tag, transact_with_auth
from sipwatch.sip.message import Request, build_request, format_hostport
from sipwatch.sip.target import Target


@dataclass(frozen=True, kw_only=True, slots=True)
class SipOptionsSpec(SipProbeSpec):
    kind: Literal["sip_options"] = "sip_options"


def default_from(spec: SipProbeSpec, local: tuple[str, int]) -> str:
    return spec.from_uri or f"sip:sipwatch@{format_hostport(local[0])}"


async def probe(spec: SipOptionsSpec, ctx: ProbeContext) -> ProbeResult:
    uri = spec.parsed_uri
    request_uri = str(uri)

    async def run(target: Target, conn: SipConnection, deadline: float) -> ProbeResult:
        from_uri = default_from(spec, conn.local)
        call_id, tag = new_call_id(), new_tag()

        def factory(cseq: int, branch: str, extra: Sequence[tuple[str, str]]) -> Request:
            return build_request(
                "OPTIONS",
                request_uri,
                transport=conn.transport.name,
                local=conn.local,
                from_uri=from_uri,
                to_uri=str(uri.without_params()),
                call_id=call_id,
                from_tag=tag,
                cseq=cseq,
                branch=branch,
                headers=(*extra, ("Accept", "application/sdp"), ("User-Agent", ctx.user_agent)),
            )

        exchange, auth, _ = await transact_with_auth(
            conn,
            factory,
            method="OPTIONS",
            uri=request_uri,
            credentials=spec.credentials(),
            deadline=deadline,
        )
        result = exchange_result(spec, target, exchange)
        if auth.rejected:
            result = replace(
                result,
                detail="credentials rejected: challenged again after the authenticated retry",
            )
        elif auth.error:
            result = replace(result, detail=f"cannot answer the challenge: {auth.error}")
        return result

    return await probe_targets(spec, ctx, "OPTIONS", run)
