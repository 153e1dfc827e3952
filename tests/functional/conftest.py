"""Fixtures of the functional tests that run the crm tools on a file CIB (testbed.pacemaker):
never a live cluster.

    template     module    a FileCluster built once per test module (crm tools, CIB_file)
    cluster      function  a copy of `template` for one test, in its tmp_path
    never_live   function  CIB_file names a file that does not exist, so that a crm tool run
                           without a cib_file still gets a file, not a cluster (belt and
                           braces; a module opts in with
                           pytestmark = pytest.mark.usefixtures("never_live"))
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.pacemaker import FileCluster


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> FileCluster:
    return FileCluster.build(tmp_path_factory.mktemp("cib") / "template.xml")


@pytest.fixture
def cluster(template: FileCluster, tmp_path: Path) -> FileCluster:
    return template.copy(tmp_path / "cib.xml")


@pytest.fixture
def never_live(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CIB_file", str(tmp_path / "no-such-cib.xml"))
