"""Which asyncio event loop `sipwatch run` runs on: the standard library's, or uvloop (libuv,
well kept, MagicStack) when it is installed (`pip install 'sipwatch[fast]'`) and
SIPWATCH_EVENT_LOOP=uvloop asks for it.

Owns: that choice. Must not know: what runs on the loop. The standard loop stays the default:
every functional test runs on it; uvloop is an accelerator an operator opts into, measured in
bench/engine.py against sipp with and without it.

    SIPWATCH_EVENT_LOOP=asyncio   the standard loop (default)
    SIPWATCH_EVENT_LOOP=uvloop    uvloop; a ConfigError when it is not installed
    SIPWATCH_EVENT_LOOP=auto      uvloop when installed, else the standard loop
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from sipwatch.errors import ConfigError

T = TypeVar("T")
ENV = "SIPWATCH_EVENT_LOOP"
CHOICES = ("asyncio", "uvloop", "auto")


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """asyncio.run(main) on the chosen loop (`choice`, else $SIPWATCH_EVENT_LOOP)."""
    import asyncio

    wanted = (os.environ.get(ENV, "asyncio") if choice is None else choice).strip().lower()
    if wanted not in CHOICES:
        main.close()
        raise ConfigError(f"{ENV}: {wanted[:20]!r} is not one of {', '.join(CHOICES)}")
    if wanted != "asyncio":
        try:
            import uvloop
        except ImportError:
            if wanted == "uvloop":
                main.close()
                raise ConfigError(
                    f"{ENV}=uvloop but uvloop is not installed (pip install 'sipwatch[fast]')"
                ) from None
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
