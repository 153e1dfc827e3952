"""One test per crash the fuzz targets (fuzz/, `make fuzz`) found, named after the bug, with
the minimised input: each parser must refuse it with its own parse error, never let another
exception escape. The inputs are also in fuzz/corpus/<target>/ as seeds."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from sipwatch.cluster.pacemaker import CallResult, ClusterView, PacemakerTools, _parse
from sipwatch.config import load_settings
from sipwatch.errors import ClusterError, ConfigError
from sipwatch.policy.load import load_policy
from sipwatch.probes.drbd import DrbdParseError, parse_status

#: Nesting deeper than the interpreter's recursion limit: what a recursive reader cannot take.
DEEP = sys.getrecursionlimit() + 10


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # fuzz target `config`: tomllib.load decodes the bytes itself and raises
    # UnicodeDecodeError, which is not a TOMLDecodeError.
    path = tmp_path / "sipwatch.toml"
    path.write_bytes(b'[sip]\nuser_agent = "\xff"\n')
    with pytest.raises(ConfigError, match=r"sipwatch\.toml is not UTF-8"):
        load_settings(path)


def test_policy_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # fuzz target `policy`: the same UnicodeDecodeError from tomllib.load.
    path = tmp_path / "policy.toml"
    path.write_bytes(b'description = "\xeb"\n')
    with pytest.raises(ConfigError, match=r"policy\.toml is not UTF-8"):
        load_policy(path)


def test_config_file_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    # tomllib parses arrays and inline tables recursively: RecursionError.
    path = tmp_path / "sipwatch.toml"
    path.write_bytes(b"a = " + b"[" * DEEP)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(path)


def test_policy_file_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"a = " + b"{b=" * DEEP)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_policy(path)


def test_drbd_status_nested_too_deeply_is_a_parse_error() -> None:
    # json.loads recurses per array/object level: RecursionError, not ValueError.
    with pytest.raises(DrbdParseError, match="nested too deeply"):
        parse_status(b"[" * DEEP)


def _mon_root(text: str) -> ET.Element:
    return _parse(CallResult("crm_mon", 0, text), "pacemaker-result")


def _deep_resources(tag: str) -> str:
    return f"<{tag} id='g'>" * DEEP + f"</{tag}>" * DEEP


@pytest.mark.parametrize("tag", ["group", "clone", "bundle"])
def test_crm_resources_nested_too_deeply_are_a_cluster_error(tag: str) -> None:
    # ClusterView.from_xml walked nested groups/clones/bundles recursively: RecursionError.
    # Pacemaker nests at most a bundle or clone around a group around primitives.
    root = _mon_root(
        f"<pacemaker-result><resources>{_deep_resources(tag)}</resources></pacemaker-result>"
    )
    with pytest.raises(ClusterError, match="nested"):
        ClusterView.from_xml(root)


def test_crm_simulate_resources_nested_too_deeply_are_a_cluster_error() -> None:
    class Canned(PacemakerTools):
        def run(
            self,
            tool: str,
            args: Sequence[str],
            *,
            cib_file: Path | None = None,
            retry: bool = True,
        ) -> CallResult:
            status = f"<cluster_status><resources>{_deep_resources('group')}</resources>"
            return CallResult(
                tool, 0, f"<pacemaker-result>{status}</cluster_status></pacemaker-result>"
            )

    with pytest.raises(ClusterError, match=r"crm_simulate: .* nested"):
        Canned(env={}).simulate(Path("cib.xml"))
