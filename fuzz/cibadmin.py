"""`cibadmin --query` through `PacemakerTools.snapshot` and every CibSnapshot reader (quorum,
properties, node attributes, join state, bans and whether they are active), and `cibadmin
--query --scope constraints` through `PacemakerTools.bans`. Allowed: ClusterError."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from fuzz._crm import CannedTools, decode, names
from sipwatch.errors import ClusterError

_WORKDIR = Path(tempfile.mkdtemp(prefix="sipwatch-fuzz-cib-"))
_NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def TestOneInput(data: bytes) -> None:
    text = decode(data)
    tools = CannedTools(text)
    resources = [*names(text, "rsc"), "g_pbx"]
    try:
        snap = tools.snapshot(_WORKDIR)
    except ClusterError:
        pass
    else:
        _ = snap.have_quorum
        for prop in ("stonith-enabled", "node-health-strategy", "maintenance-mode"):
            snap.cluster_property(prop)
        for node in [*names(text, "uname"), "n1"]:
            _ = snap.has_node(node), snap.joined(node)
            snap.node_attribute(node, "standby")
            snap.transient_attribute(node, "#health-sipwatch")
        for rid in resources:
            for ban in snap.bans(rid).values():
                ban.active(_NOW)
    try:
        for rid in resources:
            for ban in tools.bans(rid).values():
                ban.active(_NOW)
    except ClusterError:
        pass
