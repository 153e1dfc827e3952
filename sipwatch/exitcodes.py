"""Every exit code sipwatch's commands return, in one place (imports nothing: not even
`typing`, ~15 ms that `check`'s fast path does not pay).

The OCF shim (sipwatch/ocf/sipwatch) keeps the shell side of the `check` table
(CHECK_COLOUR, its `sipwatch_colour_of`); tests/unit/test_ocf_agent_table.py runs the shim's
and fails when the two disagree.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# `sipwatch probe` (same meaning as sipsak's)
PROBE_ALIVE: Final = 0  # the answer's status is counted as alive
PROBE_NOT_ALIVE: Final = 1  # answered, but not alive (bad status, 503 draining, auth)
PROBE_LOCAL: Final = 2  # local, usage or config error: nothing was learnt about the peer
PROBE_NO_ANSWER: Final = 3  # no answer or transport error

_PROBE_NOT_ALIVE_OUTCOMES: Final = frozenset({"bad_status", "draining", "no_media"})
_PROBE_LOCAL_OUTCOMES: Final = frozenset({"local_error"})


def probe_exit_code(outcome: str) -> int:
    """The `sipwatch probe` exit code of one result's outcome."""
    if outcome == "ok":
        return PROBE_ALIVE
    if outcome in _PROBE_NOT_ALIVE_OUTCOMES:
        return PROBE_NOT_ALIVE
    if outcome in _PROBE_LOCAL_OUTCOMES:
        return PROBE_LOCAL
    return PROBE_NO_ANSWER


# `sipwatch check` (OCF return codes, so the shim can pass them through)
CHECK_OK: Final = 0  # green
CHECK_FAILED: Final = 1  # red (OCF_ERR_GENERIC)
CHECK_MISSING_TOOL: Final = 5  # OCF_ERR_INSTALLED
CHECK_BAD_CONFIG: Final = 6  # OCF_ERR_CONFIGURED
CHECK_NOT_RUNNING: Final = 7  # OCF_NOT_RUNNING
CHECK_DEGRADED: Final = 190  # yellow (OCF_DEGRADED; Pacemaker's own list stops at 9)

#: The health colour the OCF agent publishes for each `check` exit code; any other code
#: (a missing tool, a bad config, sipwatch itself broken) is a local error: nothing is
#: published and nothing fails over.
CHECK_COLOUR: Final = {
    CHECK_OK: "green",
    CHECK_DEGRADED: "yellow",
    CHECK_FAILED: "red",
    CHECK_NOT_RUNNING: "red",
}

# Nagios plugin convention (`sipwatch check --format nagios`)
NAGIOS_OK: Final = 0
NAGIOS_WARNING: Final = 1
NAGIOS_CRITICAL: Final = 2
NAGIOS_UNKNOWN: Final = 3

# `sipwatch cluster ...`
CLUSTER_OK: Final = 0
CLUSTER_FAILED: Final = 1  # the action ran and failed, or the status is not ok
CLUSTER_LOCAL: Final = 2  # config, usage or tool error
CLUSTER_REFUSED: Final = 3  # a safety rail refused the action

# `sipwatch run`
RUN_OK: Final = 0
RUN_BAD_CONFIG: Final = 6  # as OCF_ERR_CONFIGURED
