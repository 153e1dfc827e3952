"""`crm_mon --output-as=xml` through the cluster-view reader (`ClusterView.from_xml`, the same
reader crm_simulate's output goes through) and every lookup on the view. Allowed:
ClusterError."""

from __future__ import annotations

from fuzz._crm import decode, names
from sipwatch.cluster.pacemaker import CallResult, ClusterView, _parse
from sipwatch.errors import ClusterError


def TestOneInput(data: bytes) -> None:
    text = decode(data)
    try:
        root = _parse(CallResult("crm_mon", 0, text), "pacemaker-result")
    except ClusterError:
        return
    view = ClusterView.from_xml(root)
    for resource in view.resources:
        _ = resource.running_on, resource.running
    for rid in [*names(text, "id"), "g_pbx"]:
        found = view.resource(rid)
        if found is not None:
            _ = found.running_on
    for node in names(text, "name"):
        view.node(node)
