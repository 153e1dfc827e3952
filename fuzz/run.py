"""Run one fuzz target under atheris (libFuzzer): `python -m fuzz.run TARGET [LIBFUZZER_ARGS]`.

sipwatch (and tomllib, the pure-Python TOML reader the loaders use) is imported with
atheris's coverage instrumentation; every argument after TARGET goes to libFuzzer unchanged
(`-runs=N`, `-max_total_time=S`, corpus directories...). Needs the `fuzz` extra.
"""

from __future__ import annotations

import importlib
import sys

from fuzz import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz.run TARGET [libFuzzer args]; targets: {' '.join(TARGETS)}")
    import atheris  # type: ignore[import-untyped]

    name = sys.argv[1]
    with atheris.instrument_imports(include=["sipwatch", "fuzz", "tomllib"]):
        module = importlib.import_module(f"fuzz.{name}")
    atheris.Setup([sys.argv[0], *sys.argv[2:]], module.TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
