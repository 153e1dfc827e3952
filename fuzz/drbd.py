"""`drbdsetup status --json` output (bytes, as the probe receives them) through
`parse_status`, then the judgement (`assess`) of everything it returned, for all resources
and for the first one by name. Allowed: DrbdParseError."""

from __future__ import annotations

from sipwatch.probes.drbd import DrbdParseError, assess, parse_status


def TestOneInput(data: bytes) -> None:
    try:
        resources = parse_status(data)
    except DrbdParseError:
        return
    assessment, _extra = assess(resources, None)
    _ = assessment.detail
    if resources:
        assess(resources, resources[0].name)
    assess(resources, "no-such-resource")
