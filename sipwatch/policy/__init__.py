"""The policy: from probe results over time to a verdict (green/yellow/red), a score and
reasons, and whether this node may run the PBX.

    schema.py   the policy file's keys (pydantic, frozen), rule lookup by probe name/kind
    engine.py   pure: observe/decide/evaluate/one_shot; no I/O, no clock, no asyncio
    load.py     the one I/O edge: find a shipped policy by name or read a path

Keys and semantics: docs/policies.md.
"""

from __future__ import annotations

from sipwatch.policy.engine import (
    PolicyState,
    ProbeState,
    decide,
    evaluate,
    initial_state,
    observe,
    one_shot,
)
from sipwatch.policy.load import load_policy, parse_policy, policy_path
from sipwatch.policy.schema import Policy, Rule, RuleOverride

__all__ = [
    "Policy",
    "PolicyState",
    "ProbeState",
    "Rule",
    "RuleOverride",
    "decide",
    "evaluate",
    "initial_state",
    "load_policy",
    "observe",
    "one_shot",
    "parse_policy",
    "policy_path",
]
