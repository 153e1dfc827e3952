"""bench/soak.py's pure parts: the schedule is deterministic and covers every fault, the
least-squares slope is right, the warm-up is left out of the resource slopes."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_soak", BENCH / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_an_hour_alternates_every_fault_with_clean_phases(soak: ModuleType) -> None:
    phases = soak.build_schedule(3600.0, 20.0, 30.0)
    assert phases == soak.build_schedule(3600.0, 20.0, 30.0)  # deterministic
    assert phases[0].fault == "clean" and phases[0].end_s == 30.0
    assert all(p.fault == "clean" for p in phases[0::2])
    assert all(p.fault != "clean" for p in phases[1::2])
    assert all(a.end_s == b.start_s for a, b in pairwise(phases))
    assert phases[-1].end_s == 3600.0
    counts = Counter(p.fault for p in phases[1::2])
    assert set(counts) == set(soak.FAULT_ORDER) and min(counts.values()) >= 12
    with pytest.raises(ValueError, match="unknown fault"):
        soak.build_schedule(60.0, 10.0, 10.0, ("nope",))


def test_reloads_fall_at_varying_points_of_the_phases(soak: ModuleType) -> None:
    times = soak.reload_times(3600.0, 150.0)
    assert len(times) == 23 and times[0] == 157.0
    assert len({(t - 30.0) % 40.0 for t in times}) >= 4


def test_slope_per_hour_and_the_warm_up(soak: ModuleType) -> None:
    assert soak.slope_per_h([(t, 7.0 + 3.0 * t / 3600) for t in range(0, 3600, 10)]) == (
        pytest.approx(3.0)
    )
    assert soak.slope_per_h([(0.0, 1.0), (10.0, 1.0)]) is None
    # 5 MB of growth in the warm-up, flat after it: flat.
    samples = [
        {
            "t": float(t),
            "rss_mb": 50.0 + min(t, 300) / 60,
            "fds": 9.0,
            "tasks": float("nan"),
            "threads": 2.0,
            "cpu_s": t / 20,
        }
        for t in range(0, 3600, 10)
    ]
    res = soak.resources(soak.Record(resources=samples), 300.0)
    assert res["rss_mb"]["slope_per_h"] == pytest.approx(0.0)
    assert res["tasks"]["slope_per_h"] is None  # never read: no slope, never "flat"
    assert res["cpu_percent_after_warmup"] == pytest.approx(5.0)
