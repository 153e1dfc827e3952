"""Shared by the file-loader targets: the input written to a private temporary file, as an
operator's editor would leave it, and an environment without SIPWATCH_* overrides."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

for _name in [n for n in os.environ if n.startswith("SIPWATCH_")]:
    del os.environ[_name]

_DIR = Path(tempfile.mkdtemp(prefix="sipwatch-fuzz-"))


def as_file(data: bytes, name: str) -> Path:
    path = _DIR / name
    path.write_bytes(data)
    return path
