"""`crm_simulate --simulate --output-as=xml` through `PacemakerTools.simulate` and the
lookups the agents make on both views. Allowed: ClusterError."""

from __future__ import annotations

from pathlib import Path

from fuzz._crm import CannedTools, decode, names
from sipwatch.errors import ClusterError


def TestOneInput(data: bytes) -> None:
    text = decode(data)
    try:
        sim = CannedTools(text).simulate(Path("cib.xml"))
    except ClusterError:
        return
    for view in (sim.current, sim.revised):
        for rid in [*names(text, "id"), "g_pbx"]:
            found = view.resource(rid)
            if found is not None:
                _ = found.running_on, found.running
        for node in names(text, "name"):
            view.node(node)
