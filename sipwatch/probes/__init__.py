"""Probes: one module per kind, each exporting one declaration, `KIND` (a ProbeKind).

    async def probe(spec, ctx) -> ProbeResult

A probe never raises: whatever goes wrong becomes a ProbeResult whose outcome says what
failed. `run_probe` enforces that for every kind, with a hard deadline and a catch-all that
turns a bug into a loud `local_error` (which never counts toward failover).

`KIND_MODULES` is the one list of kinds: a new kind is a module and a line there; the config
union (sipwatch.config) and `kinds()` are built from it. A spec finds its kind through the
module that defines its class (`kind_of`), so a one-shot CLI run imports only the kind it
runs (and SIP probes on IP literals can run without asyncio: `ProbeKind.probe_now`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import ProbeContext
from sipwatch.probes.kind import ProbeKind, ProbeSpecBase

#: Every probe kind's module, each exporting `KIND`. One line per probe kind.
KIND_MODULES: tuple[str, ...] = (
    "sipwatch.probes.sip_options",
    "sipwatch.probes.sip_register",
    "sipwatch.probes.sip_call",
    "sipwatch.probes.via_vip",
    "sipwatch.probes.from_vip",
    "sipwatch.probes.pbx_process",
    "sipwatch.probes.vip",
    "sipwatch.probes.drbd",
)


def _declared(module_name: str) -> ProbeKind[Any] | None:
    declared = getattr(importlib.import_module(module_name), "KIND", None)
    return declared if isinstance(declared, ProbeKind) else None


def kinds() -> dict[str, ProbeKind[Any]]:
    """kind name -> its declaration, for every module in KIND_MODULES (imports them all).
    `Any`: each declaration is generic over its own spec class; `kind_of` pairs them."""
    found: dict[str, ProbeKind[Any]] = {}
    for module_name in KIND_MODULES:
        declared = _declared(module_name)
        if declared is None:
            raise TypeError(f"{module_name} exports no KIND = ProbeKind(...)")
        if declared.name in found:
            raise TypeError(f"probe kind {declared.name!r} is declared twice")
        found[declared.name] = declared
    return found


def kind_of(spec: ProbeSpecBase) -> ProbeKind[Any]:
    """The declaration of a spec's kind. The module defining the spec's class exports it,
    and is imported already (the spec exists): nothing else is imported."""
    module = sys.modules.get(type(spec).__module__)
    declared = getattr(module, "KIND", None)
    if isinstance(declared, ProbeKind) and declared.spec is type(spec):
        return declared
    return kinds()[spec.kind]


#: Slack over a spec's timeout_s before run_probe gives up on the probe itself (REGISTER's
#: unregister gets one more timeout_s of its own).
_GRACE_S = 1.0


async def run_probe(spec: ProbeSpecBase, ctx: ProbeContext) -> ProbeResult:
    import asyncio

    kind = kind_of(spec)
    fn = kind.probe
    budget = 2 * spec.timeout_s if kind.budget is None else kind.budget(spec)
    hard_limit = budget + _GRACE_S
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
        import logging

        logging.getLogger("sipwatch.probes").exception("event=probe_crashed probe=%s", spec.name)
        return ProbeResult(
            probe=spec.name,
            kind=spec.kind,
            target=getattr(spec, "uri", ""),
            outcome=Outcome.LOCAL_ERROR,
            detail=f"internal error: {type(exc).__name__}: {exc}",
        )


__all__ = [
    "KIND_MODULES",
    "ProbeContext",
    "ProbeKind",
    "ProbeSpecBase",
    "kind_of",
    "kinds",
    "run_probe",
]
