"""What a probe may remember between runs: one small slot per probe name, owned by the caller.

Owns: `ProbeMemory`, a keyed store the daemon keeps for its whole life and passes to every
run (through `ProbeContext.memory`). A one-shot `sipwatch probe` gets a fresh, empty one, so
anything a probe derives from memory (restarts, CPU rate) is simply absent on a first run.
No module-level state: two daemons (or two tests) never share memory by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Closing:
    """A slot that holds something to release (sockets): ProbeMemory.close() and forget()
    close it."""

    def close(self) -> None:
        raise NotImplementedError


class ProbeMemory:
    """Per-probe state across runs, keyed by probe name."""

    def __init__(self) -> None:
        self._slots: dict[str, Any] = {}

    def slot(self, name: str, factory: Callable[[], T], kind: type[T]) -> T:
        """The slot of probe `name`, created with `factory` on first use. A slot of another
        type under the same name (a renamed probe kind) is replaced, not trusted."""
        value = self._slots.get(name)
        if not isinstance(value, kind):
            value = factory()
            self._slots[name] = value
        return value

    def forget(self, name: str) -> None:
        value = self._slots.pop(name, None)
        if isinstance(value, Closing):
            value.close()

    def retain(self, names: set[str]) -> None:
        """Forget (and close) the slots of probes not in `names` (a reload removed them); a
        slot `NAME#part` belongs to probe NAME."""
        for key in list(self._slots):
            if key.partition("#")[0] not in names:
                self.forget(key)

    def close(self) -> None:
        """Release what every slot holds (the daemon stops); the memory stays usable."""
        for name in list(self._slots):
            self.forget(name)

    def __len__(self) -> int:
        return len(self._slots)
