"""Probes: one module per kind, one signature, a read-only registry.

    async def probe(spec, ctx) -> ProbeResult

A probe never raises: whatever goes wrong becomes a ProbeResult whose outcome says what
failed. `run_probe` enforces that for every kind, with a hard deadline and a catch-all that
turns a bug into a loud `local_error` (which never counts toward failover).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes import sip_options, sip_register
from sipwatch.probes._sip import ProbeContext

log = logging.getLogger("sipwatch.probes")

ProbeFn = Callable[[Any, ProbeContext], Awaitable[ProbeResult]]

REGISTRY: Mapping[str, ProbeFn] = MappingProxyType(
    {
        "sip_options": sip_options.probe,
        "sip_register": sip_register.probe,
    }
)

SPECS: Mapping[str, type] = MappingProxyType(
    {
        "sip_options": sip_options.SipOptionsSpec,
        "sip_register": sip_register.SipRegisterSpec,
    }
)

#: Slack over a spec's timeout_s before run_probe gives up on the probe itself (REGISTER's
#: unregister gets one more timeout_s of its own).
_GRACE_S = 1.0


async def run_probe(spec: Any, ctx: ProbeContext) -> ProbeResult:
    fn = REGISTRY[spec.kind]
    hard_limit = 2 * spec.timeout_s + _GRACE_S
    try:
        return await asyncio.wait_for(fn(spec, ctx), hard_limit)
    except TimeoutError:
        return ProbeResult(
            probe=spec.name,
            kind=spec.kind,
            target=getattr(spec, "uri", ""),
            outcome=Outcome.TIMEOUT,
            detail=f"probe did not finish within {hard_limit:g} s",
        )
    except Exception as exc:  # a bug must not take the daemon down: report it loudly
        log.exception("event=probe_crashed probe=%s", spec.name)
        return ProbeResult(
            probe=spec.name,
            kind=spec.kind,
            target=getattr(spec, "uri", ""),
            outcome=Outcome.LOCAL_ERROR,
            detail=f"internal error: {type(exc).__name__}: {exc}",
        )


__all__ = ["REGISTRY", "SPECS", "ProbeContext", "ProbeFn", "run_probe"]
