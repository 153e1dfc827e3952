"""Password files as others on the host see them: warn, as ssh warns of a private key, when
group or others may read or write one. The file is still used (refusing would turn a
permissions slip into a failover); reading it is the probe's job (`probes/_sip.py`), which
reports a missing, unreadable or empty file as a local error.

A symlink is followed (Kubernetes and systemd credentials mount secrets as symlinks); the
mode that counts is its target's, since that is what can be read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable


def exposed_mode(path: str) -> int | None:
    """The permission bits of `path` when group or others may read or write it, else None
    (None too when it cannot be stat'ed: reading it will say why)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and stat.S_ISREG(mode):
        return stat.S_IMODE(mode)
    return None


def exposed(specs: Iterable[object]) -> list[tuple[str, str, int]]:
    """(probe name, path, mode) of each password file in `specs` others may read or write."""
    from sipwatch.probes._sip import SipProbeSpec

    found = []
    for spec in specs:
        if isinstance(spec, SipProbeSpec) and spec.password_file:
            mode = exposed_mode(spec.password_file)
            if mode is not None:
                found.append((spec.name, spec.password_file, mode))
    return found
