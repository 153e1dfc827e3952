"""What a probe kind declares: one `ProbeKind` per kind module, exported as `KIND`.

    KIND = ProbeKind(name="vip", spec=VipSpec, probe=probe, wake=VipWatch)

Owns: the shape of that declaration, the fields every spec has (`ProbeSpecBase`), the check
of the timing fields they share (`check_timing`), and what a wake-up source is (`Watch`).
The registry (sipwatch.probes) and the config union (sipwatch.config) are built from these
declarations; nothing else lists a kind. Must not know: any kind, asyncio at import time
(the one-shot CLI imports this and never starts an event loop).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from sipwatch.model import ProbeResult

if TYPE_CHECKING:
    import asyncio

    from sipwatch.probes._sip import ProbeContext


class ProbeSpecBase(Protocol):
    """What every probe spec has: the daemon and the registry read nothing else.
    Specs are frozen dataclasses, so these are read-only here."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def interval_s(self) -> float: ...


#: Makes every probe run at once, saying why (the daemon's `wake_all`).
WakeAll = Callable[[str], None]


class Watch(Protocol):
    """A wake-up source a kind runs beside one of its probes (the daemon starts one per spec
    whose kind declares `wake`): something it sees between runs — the VIP leaving, the PBX
    exiting — makes every probe run at once instead of at its next interval. A watch fails
    softly: it logs and ends, the probes' intervals still cover what it would have seen."""

    def seen(self, result: ProbeResult) -> None:
        """Each result of the watched probe, as the daemon records it."""

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set, then release what the watch holds."""


SpecT = TypeVar("SpecT", bound=ProbeSpecBase)


@dataclass(frozen=True, slots=True)
class ProbeKind(Generic[SpecT]):
    """One probe kind. `name` is the `kind` key in config files and results; `spec` the
    frozen dataclass config validates into; `probe` never raises (sipwatch.probes.run_probe
    enforces it). `probe_now`: a blocking, asyncio-free run for the one-shot CLI, returning
    None when it cannot (the URI needs DNS); None here means the kind has no such path.
    `wake`: makes the kind's `Watch` for one spec; None means it has none.
    `budget`: the longest one run of a spec may take (run_probe's hard limit, before its
    grace); None: twice `timeout_s` (a request and one follow-up, e.g. the unregister)."""

    name: str
    spec: type[SpecT]
    probe: Callable[[SpecT, ProbeContext], Awaitable[ProbeResult]]
    probe_now: Callable[[SpecT, ProbeContext], ProbeResult | None] | None = None
    wake: Callable[[SpecT, WakeAll], Watch] | None = None
    budget: Callable[[SpecT], float] | None = None


def check_timing(timeout_s: float, interval_s: float, *, max_timeout_s: float = 60) -> None:
    """The check every spec makes of its deadline and interval. Raises ValueError."""
    if not 0 < timeout_s <= max_timeout_s:
        raise ValueError(f"timeout_s must be > 0 and <= {max_timeout_s:g}")
    if interval_s <= 0:
        raise ValueError("interval_s must be > 0")
