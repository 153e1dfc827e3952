"""A probe kind is one module exporting one declaration (`KIND = ProbeKind(...)`): the
registry and the config union are built from `KIND_MODULES`, so a new kind needs its module
and one line, and nothing else lists it."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest

import sipwatch.config
import sipwatch.probes
from sipwatch.daemon import Daemon
from sipwatch.errors import ConfigError
from sipwatch.model import Outcome, ProbeResult
from sipwatch.policy import Policy
from sipwatch.probes import KIND_MODULES, kind_of, kinds, run_probe
from sipwatch.probes._sip import FORBID_EXTRA, ProbeContext
from sipwatch.probes._wake import EXIT_SETTLE_S, ExitWatch
from sipwatch.probes.kind import ProbeKind, WakeAll, check_timing

ROOT = Path(__file__).resolve().parents[2]


def _config_union() -> tuple[type, ...]:
    """The spec classes of `Settings.probes`, as pydantic sees them."""
    (item,) = typing.get_args(sipwatch.config.Settings.model_fields["probes"].annotation)
    union, *_ = typing.get_args(item)  # Annotated[Union[...], Field(discriminator="kind")]
    return typing.get_args(union)


def test_every_kind_module_exports_one_declaration() -> None:
    declared = kinds()
    assert len(declared) == len(KIND_MODULES)
    for module_name in KIND_MODULES:
        module = importlib.import_module(module_name)
        kind = module.KIND
        assert isinstance(kind, ProbeKind)
        assert declared[kind.name] is kind
        assert kind.spec.__module__ == module_name  # kind_of finds it through this
        fields = {f.name: f for f in dataclasses.fields(kind.spec)}
        assert fields["kind"].default == kind.name
        # No stub that only says "no blocking variant": None in the declaration says it.
        if kind.probe_now is None:
            assert not hasattr(module, "probe_now"), module_name


def test_registry_and_config_union_agree() -> None:
    union = _config_union()
    assert union == tuple(kind.spec for kind in kinds().values())  # the same objects
    assert {s.__dataclass_fields__["kind"].default for s in union} == set(kinds())


def test_the_wake_up_sources_are_declared_by_their_kinds() -> None:
    declared = kinds()
    assert {name for name, kind in declared.items() if kind.wake is not None} == {
        "vip",
        "pbx_process",
    }
    assert {name for name, kind in declared.items() if kind.probe_now is not None} == {
        "sip_options",
        "sip_register",
    }


# -- a kind this test declares: a module of its own would need nothing more ------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeSpec:
    __pydantic_config__ = FORBID_EXTRA

    kind: Literal["fake"] = "fake"
    name: str = "fake"
    colour: str = "green"
    timeout_s: float = 1.0
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        check_timing(self.timeout_s, self.interval_s)


async def _fake_probe(spec: FakeSpec, ctx: ProbeContext) -> ProbeResult:
    return ProbeResult(
        probe=spec.name, kind=spec.kind, target=spec.colour, outcome=Outcome.OK, detail="fake"
    )


KIND = ProbeKind(name="fake", spec=FakeSpec, probe=_fake_probe)


@pytest.fixture
def with_fake_kind(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """sipwatch.config as it loads with this module's kind added to KIND_MODULES (a copy
    under another name: the imported sipwatch.config stays what every other test uses)."""
    monkeypatch.setattr(sipwatch.probes, "KIND_MODULES", (*KIND_MODULES, __name__))
    source = importlib.util.spec_from_file_location(
        "sipwatch._config_with_fake_kind", sipwatch.config.__file__
    )
    assert source is not None and source.loader is not None
    module = importlib.util.module_from_spec(source)
    monkeypatch.setitem(sys.modules, source.name, module)
    source.loader.exec_module(module)
    return module


def test_a_new_kind_needs_only_its_declaration(with_fake_kind: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "fake.toml"
    path.write_text(
        '[[probes]]\nkind = "fake"\ncolour = "blue"\n\n'
        '[[probes]]\nkind = "vip"\naddress = "192.0.2.130"\n'
    )
    settings = with_fake_kind.load_settings(path)
    fake, vip = settings.probes
    assert type(fake) is FakeSpec and fake.colour == "blue"
    assert vip.kind == "vip"
    assert kind_of(fake) is KIND
    result = asyncio.run(run_probe(fake, ProbeContext()))
    assert (result.outcome, result.target) == (Outcome.OK, "blue")


def test_a_new_kind_gets_the_config_errors(with_fake_kind: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "fake.toml"
    path.write_text('[[probes]]\nkind = "fake"\ntimeout_s = 0\n')
    with pytest.raises(ConfigError, match=r"probes\.0\.fake: timeout_s must be > 0 and <= 60"):
        with_fake_kind.load_settings(path)
    path.write_text('[[probes]]\nkind = "fake"\nshade = 1\n')
    with pytest.raises(ConfigError, match="shade"):
        with_fake_kind.load_settings(path)
    # ... and the real sipwatch.config, built without it, still refuses the kind.
    with pytest.raises(ConfigError, match="fake"):
        sipwatch.config.load_settings(path)


def test_one_shot_probe_imports_only_its_kind() -> None:
    """`sipwatch probe URI` is timed against sipsak: it must not import every kind, the config
    (pydantic) or asyncio to find the one it runs."""
    code = (
        "import sys\n"
        "from sipwatch.cli import main\n"
        "main(['probe', 'sip:127.0.0.1:9', '--timeout', '0.2'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('sipwatch', 'asyncio',"
        " 'pydantic')))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    loaded = set(done.stdout.split("\n")[-2].split())
    assert "sipwatch.probes.sip_options" in loaded, done.stdout + done.stderr
    others = {m for m in KIND_MODULES if m != "sipwatch.probes.sip_options"}
    assert not loaded & (others | {"sipwatch.config", "asyncio", "pydantic"})


class _Watch:
    """Asks for a re-probe when it sees the first result; remembers what it saw."""

    def __init__(self, spec: FakeSpec, wake_all: WakeAll) -> None:
        self.wake_all = wake_all
        self.seen_outcomes: list[Outcome] = []
        self.stopped = False

    def seen(self, result: ProbeResult) -> None:
        self.seen_outcomes.append(result.outcome)
        if len(self.seen_outcomes) == 1:
            self.wake_all("fake changed")

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopped = True


async def test_the_daemon_runs_a_kinds_wake_up_source(monkeypatch: pytest.MonkeyPatch) -> None:
    watches: list[_Watch] = []

    def wake(spec: FakeSpec, wake_all: WakeAll) -> _Watch:
        watches.append(_Watch(spec, wake_all))
        return watches[-1]

    monkeypatch.setattr(sys.modules[__name__], "KIND", dataclasses.replace(KIND, wake=wake))
    # An interval far beyond the test: a second run can only come from the watch's wake_all.
    daemon = Daemon([FakeSpec(interval_s=300)], ProbeContext(), Policy.model_validate({}))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(watches) == 1 and len(watches[0].seen_outcomes) >= 2:
            break
    stop.set()
    await running
    (watch,) = watches
    assert watch.seen_outcomes[:2] == [Outcome.OK, Outcome.OK] and watch.stopped


# -- the pidfd wake-up source -----------------------------------------------------------------


def _running(pid: int) -> ProbeResult:
    return ProbeResult(
        probe="pbx",
        kind="pbx_process",
        target="x",
        outcome=Outcome.OK,
        extra={"running": True, "pid": pid},
    )


def _pid_of(result: ProbeResult) -> int | None:
    pid = result.extra.get("pid")
    return pid if isinstance(pid, int) else None


async def test_exit_watch_wakes_when_the_process_exits_and_closes_with_stop() -> None:
    woken: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    watch = ExitWatch(lambda why: woken.append((why, loop.time())), _pid_of, "pbx")
    stop = asyncio.Event()
    runner = asyncio.create_task(watch.run(stop))
    child = await asyncio.create_subprocess_exec("sleep", "30")
    watch.seen(_running(child.pid))
    watch.seen(_running(child.pid))  # one pidfd per process, however often it is seen
    child.kill()
    killed = loop.time()
    await child.wait()
    await asyncio.sleep(EXIT_SETTLE_S + 0.2)
    assert [why for why, _ in woken] == [f"pbx pid {child.pid} exited"]
    assert woken[0][1] - killed >= EXIT_SETTLE_S * 0.9  # the settle before re-probing
    stop.set()
    await runner
    other = await asyncio.create_subprocess_exec("sleep", "30")
    watch.seen(_running(other.pid))  # a probe finishing after stop: nothing armed
    other.kill()
    await other.wait()
    await asyncio.sleep(EXIT_SETTLE_S + 0.1)
    assert len(woken) == 1


def test_exit_watch_without_a_loop_arms_nothing() -> None:
    watch = ExitWatch(lambda why: None, _pid_of, "pbx")
    watch.seen(_running(1))  # results fed by hand (no event loop): ignored, no error
