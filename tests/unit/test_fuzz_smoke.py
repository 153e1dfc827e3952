"""CI's short run of every fuzz target (fuzz/): its seed corpus, then random inputs made from
the seeds by a fixed-seed mutator, through the target's `TestOneInput` without atheris (CI
needs no atheris; `make fuzz` is the coverage-guided campaign). A failure here is a crash a
unit test in test_fuzz_regressions.py should pin down."""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fuzz import TARGETS

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
#: Per target: mutated inputs at most, and a time cap (the slow loaders stop on the cap), so
#: the whole smoke stays within a few seconds per target and ~30 s in all.
RANDOM_INPUTS = 2_000
BUDGET_S = 2.0


def _seeds(target: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((CORPUS / target).iterdir()) if p.is_file()]


def _mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """A few of libFuzzer's mutations: flip, insert, delete, repeat a slice, splice a seed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3:
            piece = buf[pos : pos + rng.randint(1, 32)]
            buf[pos:pos] = piece * rng.randint(1, 8)
        elif op == 4:
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[start : start + rng.randint(1, 64)]
        else:
            buf[pos:pos] = rng.choice([b"\r\n", b"\x00", b"\xff", b'"', b"<", b"[", b"9" * 12])
    return bytes(buf)


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_smoke(target: str) -> None:
    one_input: Callable[[bytes], None] = importlib.import_module(f"fuzz.{target}").TestOneInput
    seeds = _seeds(target)
    assert seeds, f"fuzz/corpus/{target} has no seeds"
    for seed in seeds:
        one_input(seed)
    rng = random.Random(f"sipwatch-fuzz-{target}")
    deadline = time.monotonic() + BUDGET_S
    for _ in range(RANDOM_INPUTS):
        if time.monotonic() > deadline:
            break
        data = _mutate(rng, rng.choice(seeds), seeds)
        try:
            one_input(data)
        except Exception as exc:  # name the input, so it can become a regression test
            raise AssertionError(f"{target} crashed on {data[:300]!r}") from exc
