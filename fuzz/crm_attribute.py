"""`crm_attribute --query --output-as=xml` and `attrd_updater --query --output-as=xml`
through `PacemakerTools.node_attribute` (both paths) and `cluster_option`. Allowed:
ClusterError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fuzz._crm import CannedTools, decode
from sipwatch.errors import ClusterError


def TestOneInput(data: bytes) -> None:
    tools = CannedTools(decode(data))
    queries: tuple[Callable[[], str | None], ...] = (
        lambda: tools.node_attribute("n1", "#health-sipwatch", attrd=True),
        lambda: tools.node_attribute("n1", "standby", cib_file=Path("cib.xml")),
        lambda: tools.cluster_option("node-health-strategy"),
    )
    for query in queries:
        try:
            value = query()
        except ClusterError:
            continue
        assert value is None or isinstance(value, str)
