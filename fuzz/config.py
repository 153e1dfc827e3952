"""A config file through `load_settings` (TOML, then the pydantic settings schema with every
probe kind's spec). Allowed: ConfigError."""

from __future__ import annotations

import contextlib

from fuzz._files import as_file
from sipwatch.config import load_settings
from sipwatch.errors import ConfigError


def TestOneInput(data: bytes) -> None:
    path = as_file(data, "sipwatch.toml")
    with contextlib.suppress(ConfigError):
        load_settings(path)
