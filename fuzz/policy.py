"""A policy file through `load_policy` (TOML, then the policy schema), and the rule lookup the
engine makes for every probe the policy names and every kind. Allowed: ConfigError."""

from __future__ import annotations

from fuzz._files import as_file
from sipwatch.errors import ConfigError
from sipwatch.policy.load import load_policy
from sipwatch.probes import kinds


def TestOneInput(data: bytes) -> None:
    path = as_file(data, "policy.toml")
    try:
        policy = load_policy(path)
    except ConfigError:
        return
    for kind in [*kinds(), *policy.kinds]:
        for probe in [*policy.probes, "pbx-udp"]:
            policy.rule_for(probe, kind)
