"""Probes: one module per kind, one signature, a read-only registry.

    async def probe(spec, ctx) -> ProbeResult

A probe never raises: whatever goes wrong becomes a ProbeResult whose outcome says what
failed. `run_probe` enforces that for every kind, with a hard deadline and a catch-all that
turns a bug into a loud `local_error` (which never counts toward failover).

The registry imports a probe's module on first use, so a one-shot CLI run pays only for the
kind it runs (and SIP probes on IP literals can run without asyncio: `probe_now`).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from sipwatch.model import Outcome, ProbeResult
from sipwatch.probes._sip import ProbeContext

ProbeFn = Callable[[Any, ProbeContext], Awaitable[ProbeResult]]

#: kind -> (module, spec class name). One line per probe kind.
_KINDS: dict[str, tuple[str, str]] = {
    "sip_options": ("sipwatch.probes.sip_options", "SipOptionsSpec"),
    "sip_register": ("sipwatch.probes.sip_register", "SipRegisterSpec"),
    "via_vip_sip": ("sipwatch.probes.via_vip", "ViaVipSipSpec"),
    "from_vip": ("sipwatch.probes.from_vip", "FromVipSpec"),
    "pbx_process": ("sipwatch.probes.pbx_process", "PbxProcessSpec"),
    "vip": ("sipwatch.probes.vip", "VipSpec"),
    "drbd": ("sipwatch.probes.drbd", "DrbdSpec"),
}


class _Registry(Mapping[str, Any]):
    """Read-only kind -> attribute of the kind's module, imported on first use."""

    def __init__(self, attribute: str | None) -> None:
        self._attribute = attribute

    def __getitem__(self, kind: str) -> Any:
        module_name, spec_name = _KINDS[kind]
        module = importlib.import_module(module_name)
        return getattr(module, self._attribute or spec_name)

    def __iter__(self) -> Iterator[str]:
        return iter(_KINDS)

    def __len__(self) -> int:
        return len(_KINDS)


REGISTRY: Mapping[str, ProbeFn] = _Registry("probe")
SPECS: Mapping[str, type] = _Registry(None)
BLOCKING: Mapping[str, Callable[[Any, ProbeContext], ProbeResult | None]] = _Registry("probe_now")

#: Slack over a spec's timeout_s before run_probe gives up on the probe itself (REGISTER's
#: unregister gets one more timeout_s of its own).
_GRACE_S = 1.0


async def run_probe(spec: Any, ctx: ProbeContext) -> ProbeResult:
    import asyncio

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
        import logging

        logging.getLogger("sipwatch.probes").exception("event=probe_crashed probe=%s", spec.name)
        return ProbeResult(
            probe=spec.name,
            kind=spec.kind,
            target=getattr(spec, "uri", ""),
            outcome=Outcome.LOCAL_ERROR,
            detail=f"internal error: {type(exc).__name__}: {exc}",
        )


__all__ = ["BLOCKING", "REGISTRY", "SPECS", "ProbeContext", "ProbeFn", "run_probe"]
