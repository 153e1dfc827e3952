"""Where shipped catalogs (probe sets, policies) are found by name.

Kept free of pydantic so that `sipwatch check` can find its config and ask a running daemon
without importing the whole configuration machinery.
"""

from __future__ import annotations

from pathlib import Path

from sipwatch.errors import ConfigError

__all__ = ["catalog_dirs", "find_config"]


def catalog_dirs(kind: str) -> list[Path]:
    """Where shipped catalogs (`probes`, `policies`) are looked up by name, in order."""
    import os
    import sys

    dirs = [Path(p) / kind for p in os.environ.get("SIPWATCH_CATALOG_PATH", "").split(":") if p]
    dirs += [
        Path("/etc/sipwatch") / kind,
        Path(__file__).resolve().parent.parent / kind,  # a source checkout / editable install
        Path(sys.prefix) / "share" / "sipwatch" / kind,  # installed from a wheel
    ]
    return dirs


def _exists(path: Path) -> bool:
    """exists() that treats an unreadable directory as "not here" instead of raising
    PermissionError (e.g. /etc/sipwatch unreadable to the unprivileged container user)."""
    try:
        return path.is_file() or path.exists()
    except OSError:
        return False


def find_config(name_or_path: str | Path, kind: str = "probes") -> Path:
    """A path as given if it exists or looks like a path; else `NAME.toml` in the catalog."""
    path = Path(name_or_path)
    if path.suffix or len(path.parts) > 1 or _exists(path):
        return path
    for folder in catalog_dirs(kind):
        candidate = folder / f"{path.name}.toml"
        if _exists(candidate):
            return candidate
    where = ", ".join(str(d) for d in catalog_dirs(kind))
    raise ConfigError(f"no {kind} set named {path.name!r} (looked in {where})")
