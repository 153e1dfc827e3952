"""Every config key, given a value of the wrong type, out of its range, or misspelt, is
refused with an error that names the key (issue 17 §3, docs/bad-input.md). The keys are
read from the models themselves (the sections' pydantic models, each probe kind's spec
dataclass), so a key added later is covered without touching this file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel

from sipwatch.cluster.settings import ClusterSettings
from sipwatch.config import DaemonSettings, DnsSettings, SipSettings, load_settings
from sipwatch.errors import ConfigError
from sipwatch.hooks import HookSpec
from sipwatch.probes import kinds

SECTIONS: dict[str, type[BaseModel]] = {
    "sip": SipSettings,
    "dns": DnsSettings,
    "daemon": DaemonSettings,
    "cluster": ClusterSettings,
}
#: A value of no key's type: every key takes a scalar or a list, none a table.
WRONG_TYPE = "{ nope = 1 }"
#: Good values for the keys a probe kind requires.
REQUIRED = {
    "uri": '"sip:monitor@127.0.0.1"',
    "address": '"10.0.0.100"',
    "pattern": '"kamailio"',
    "server_pattern": '"kamailio"',
    "source_address": '"127.0.0.1"',
}
#: Keys that are optional alone but of which a kind needs one (its own validation says so).
NEEDS = {
    "via_vip_sip": {"outbound_proxy": '"sip:127.0.0.2"'},
    "from_vip": {"source_address": '"127.0.0.1"'},
    "pbx_process": {"process_name": '"kamailio"'},
}


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sipwatch.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    return str(err.value)


def section_keys() -> list[tuple[str, str]]:
    return [(s, k) for s, model in SECTIONS.items() for k in model.model_fields]


@pytest.mark.parametrize("section, key", section_keys())
def test_section_key_of_the_wrong_type_is_named(tmp_path: Path, section: str, key: str) -> None:
    text = refused(tmp_path, f"[{section}]\n{key} = {WRONG_TYPE}\n")
    assert f"{section}.{key}" in text, text


def _bounds(model: type[BaseModel], key: str) -> list[str]:
    """TOML values just outside each bound the field declares."""
    out = []
    for m in model.model_fields[key].metadata:
        if isinstance(m, annotated_types.Gt | annotated_types.Ge):
            out.append(repr(m.gt if isinstance(m, annotated_types.Gt) else m.ge - 1))
        elif isinstance(m, annotated_types.Lt | annotated_types.Le):
            out.append(repr(m.lt if isinstance(m, annotated_types.Lt) else m.le + 1))
        elif isinstance(m, annotated_types.MinLen) and m.min_length > 0:
            out.append('""')
        elif isinstance(m, annotated_types.MaxLen):
            out.append('"' + "x" * (m.max_length + 1) + '"')
    return out


def range_cases() -> list[tuple[str, str, str]]:
    return [
        (s, k, v)
        for s, model in SECTIONS.items()
        for k in model.model_fields
        for v in _bounds(model, k)
    ]


@pytest.mark.parametrize("section, key, value", range_cases())
def test_section_key_out_of_range_is_named(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    text = refused(tmp_path, f"[{section}]\n{key} = {value}\n")
    assert f"{section}.{key}" in text, text


@pytest.mark.parametrize("section", [*SECTIONS, "probes", "hooks", "top"])
def test_unknown_key_is_named(tmp_path: Path, section: str) -> None:
    if section == "top":
        body = "no_such_key = 1\n"
    elif section == "probes":
        body = '[[probes]]\nkind = "sip_options"\nuri = "sip:127.0.0.1"\nno_such_key = 1\n'
    elif section == "hooks":
        body = '[[hooks]]\nargv = ["/bin/true"]\nno_such_key = 1\n'
    else:
        body = f"[{section}]\nno_such_key = 1\n"
    assert "no_such_key" in refused(tmp_path, body)


def _init_fields(cls: type) -> list[dataclasses.Field[object]]:
    return [f for f in dataclasses.fields(cls) if f.init and f.name != "kind"]


def _minimal(kind: str, cls: type) -> str:
    lines = [f'[[probes]]\nkind = "{kind}"']
    for f in _init_fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            lines.append(f"{f.name} = {REQUIRED[f.name]}")
    lines += [f"{key} = {value}" for key, value in NEEDS.get(kind, {}).items()]
    return "\n".join(lines) + "\n"


def probe_keys() -> list[tuple[str, str]]:
    return [(name, f.name) for name, k in kinds().items() for f in _init_fields(k.spec)]


@pytest.mark.parametrize("kind", list(kinds()))
def test_minimal_probe_of_each_kind_loads(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "sipwatch.toml"
    path.write_text(_minimal(kind, kinds()[kind].spec))
    assert load_settings(path).probes[0].kind == kind


@pytest.mark.parametrize("kind, key", probe_keys())
def test_probe_key_of_the_wrong_type_is_named(tmp_path: Path, kind: str, key: str) -> None:
    base = _minimal(kind, kinds()[kind].spec)
    base = "\n".join(line for line in base.splitlines() if not line.startswith(f"{key} ="))
    text = refused(tmp_path, f"{base}\n{key} = {WRONG_TYPE}\n")
    assert key in text and "probes.0" in text, text


@pytest.mark.parametrize(
    "key",
    [f.name for f in dataclasses.fields(HookSpec)]
    if dataclasses.is_dataclass(HookSpec)
    else list(HookSpec.model_fields),
)
def test_hook_key_of_the_wrong_type_is_named(tmp_path: Path, key: str) -> None:
    base = '[[hooks]]\nargv = ["/bin/true"]\n' if key != "argv" else "[[hooks]]\n"
    text = refused(tmp_path, f"{base}{key} = {WRONG_TYPE}\n")
    assert key in text and "hooks.0" in text, text
