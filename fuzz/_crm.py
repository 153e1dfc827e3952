"""Shared by the crm_* targets: PacemakerTools whose `run` (the one place a tool is started)
returns the fuzz input as the tool's stdout, decoded as `run_tool` decodes it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from sipwatch.cluster.pacemaker import CallResult, PacemakerTools


class CannedTools(PacemakerTools):
    """Every tool exits 0 and prints `stdout`."""

    def __init__(self, stdout: str) -> None:
        super().__init__(env={"PATH": "/nonexistent"})  # live mode; nothing is ever run
        self.stdout = stdout

    def run(
        self, tool: str, args: Sequence[str], *, cib_file: Path | None = None, retry: bool = True
    ) -> CallResult:
        return CallResult(tool, 0, self.stdout)


def decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def names(text: str, attribute: str) -> list[str]:
    """Values of `attribute` anywhere in the document (a few), so lookups hit real entries."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    found = [e.get(attribute) for e in root.iter()]
    return [n for n in found if n is not None][:4]
