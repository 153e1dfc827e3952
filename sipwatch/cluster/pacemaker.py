"""The only code that knows Pacemaker's command lines.

Owns: running `cibadmin`, `crm_attribute`, `crm_resource`, `crm_simulate`, `crm_mon`,
`attrd_updater` and `crm_node` as argv lists (never a shell) with a timeout, each in a process
group of its own that is killed whole when the timeout fires (`sipwatch.subproc` does the
starting, killing and reaping); retrying transient failures with
tenacity, bounded in attempts and in total time; turning the tools' XML output into values
(quorum, nodes, placement, node attributes, bans). Must not know: why a change is made or
whether it is safe — `sipwatch.cluster.agents` and `.rails` decide that.

Two modes, fixed per PacemakerTools:

    live   no CIB_file: the tools talk to the local cluster. The health attribute goes through
           the attribute manager, as ocf:pacemaker:HealthCPU does it:
           `attrd_updater -n NAME -N NODE -U VALUE`, read back with `attrd_updater -Q`
           (pacemaker-attrd owns transient attributes and writes them to the CIB status itself;
           Pacemaker 2.1.5's `-U` ignores `-d`, so there is no dampening to wait for).
    file   CIB_file=PATH (the `cib_file` argument, else CIB_file from the environment): every
           tool reads and writes that file. There is no attrd there, so the health attribute is
           written to the status section directly:
           `crm_attribute -N NODE -n NAME -l reboot -v VALUE` (same place attrd writes to).

The private copy of the CIB that the rails simulate on is always handled in file mode.

Errors: `run()` returns a CallResult and never raises; the query and change helpers raise
ClusterError (tool and what went wrong, never argv or secrets) for the agents to turn into a
failed ActionResult.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from sipwatch import subproc
from sipwatch.cluster.fencing import FenceEvent, parse_fence_history
from sipwatch.errors import ClusterError, StartError

__all__ = [
    "TOOLS",
    "Ban",
    "BanInfo",
    "CallResult",
    "Change",
    "CibSnapshot",
    "ClearBan",
    "ClearExpired",
    "ClusterView",
    "Mode",
    "NodeView",
    "PacemakerTools",
    "ResourceView",
    "SetNodeAttribute",
    "Simulation",
    "ToolPolicy",
    "ban_id",
    "iso_duration",
    "run_tool",
]

TOOLS = (
    "attrd_updater",
    "cibadmin",
    "crm_attribute",
    "crm_mon",
    "crm_node",
    "crm_resource",
    "crm_simulate",
)

# Pacemaker exit codes (`crm_error -X N`) worth another attempt: the daemon is busy or
# restarting, or our update raced another writer. A timeout is retried too.
_TRANSIENT_RCS = frozenset({69, 75, 102, 103})  # unavailable, try again, not connected, older
_RC_NO_SUCH_OBJECT = 105
# `attrd_updater --query` of an attribute attrd has never held (a node that just booted):
# Pacemaker 2.1.5 exits 78 ("Invalid configuration ... attribute does not exist"), not 105.
# Taking that for a failure made a rebooted node's first publication "fail" its read-back.
_RC_ATTRD_NO_SUCH = frozenset({78, _RC_NO_SUCH_OBJECT})
#: Exit codes that mean "the cluster daemon is not there (yet)": unavailable, not connected.
NOT_CONNECTED_RCS = frozenset({69, 102})
_SUMMARY_MAX = 160
# Far above anything these tools print here (a CIB is tens of KiB): a bound, so that a runaway
# tool cannot fill our memory. Cut output fails to parse (ClusterError), like garbage does.
_MAX_OUTPUT = 64 << 20


class Mode(enum.StrEnum):
    LIVE = "live"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """Timeout and retry bounds for every tool call. A call never takes longer than about
    `total_s` (+ the time to kill a hung tool), however many attempts are allowed."""

    timeout_s: float = 10.0  # one attempt
    attempts: int = 3
    total_s: float = 30.0  # all attempts of one call together
    backoff_s: float = 0.2  # first wait between attempts, doubled each time, at most 2 s

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.total_s <= 0 or self.backoff_s < 0:
            raise ValueError("timeout_s and total_s must be > 0, backoff_s >= 0")
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")


@dataclass(frozen=True, slots=True)
class CallResult:
    """What one tool call did. `rc` is None when the tool did not run or was killed."""

    tool: str
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    timed_out: bool = False
    attempts: int = 1
    error: str = ""  # why the tool could not be run at all

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and not self.error

    @property
    def transient(self) -> bool:
        return self.timed_out or self.rc in _TRANSIENT_RCS

    def summary(self) -> str:
        """One argv-free line: the tool and what went wrong (or "ok")."""
        if self.error:
            text = self.error
        elif self.timed_out:
            text = f"timed out after {self.duration_s:.1f} s, killed"
        elif self.rc == 0:
            text = "ok"
        else:
            first = next((ln.strip() for ln in self.stderr.splitlines() if ln.strip()), "")
            text = f"exit {self.rc}" + (f": {first}" if first else "")
        tries = f" ({self.attempts} attempts)" if self.attempts > 1 else ""
        line = f"{self.tool}: {text}{tries}"
        return line if len(line) <= _SUMMARY_MAX else line[: _SUMMARY_MAX - 3] + "..."


def run_tool(
    tool: str,
    executable: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
) -> CallResult:
    """Run one tool once, through `sipwatch.subproc`: its own process group, so a timeout
    kills it and anything it started (a wrapper script's `sleep` included) instead of leaving
    our pipes held open."""
    try:
        done = subproc.run(
            [executable, *args], env=env, timeout_s=timeout_s, max_output=_MAX_OUTPUT
        )
    except StartError as exc:
        return CallResult(tool, None, error=f"cannot run: {exc.reason}")
    if done.timed_out:
        return CallResult(tool, None, duration_s=done.duration_s, timed_out=True)
    if done.stdout_truncated:
        # What was kept is a prefix: a prefix of a node name or of an attribute value would
        # read as a valid (wrong) answer, so no output at all is used.
        return CallResult(
            tool,
            None,
            duration_s=done.duration_s,
            error=f"printed more than the {_MAX_OUTPUT >> 20} MiB kept of a tool's output",
        )
    return CallResult(
        tool,
        done.rc,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
        duration_s=done.duration_s,
    )


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration for `crm_resource --lifetime` (whole seconds, at least 1)."""
    return f"PT{max(1, round(seconds))}S"


def ban_id(resource: str, node: str) -> str:
    """The id `crm_resource --ban` gives its constraint (Pacemaker 2.1)."""
    return f"cli-ban-{resource}-on-{node}"


# --- changes: what the agents ask for, in Pacemaker's terms but without command lines ---------


@dataclass(frozen=True, slots=True)
class SetNodeAttribute:
    """Set (or delete, value None) a transient node attribute (status section, lifetime
    "reboot"). `attrd`: in live mode go through pacemaker-attrd (the health attribute)."""

    node: str
    name: str
    value: str | None
    attrd: bool = False

    def describe(self) -> str:
        if self.value is None:
            return f"delete node attribute {self.name} of {self.node}"
        return f"set node attribute {self.name}={self.value} on {self.node}"


@dataclass(frozen=True, slots=True)
class Ban:
    """Keep `resource` off `node` for `lifetime_s` (a -INFINITY location constraint)."""

    resource: str
    node: str
    lifetime_s: float

    def describe(self) -> str:
        return f"ban {self.resource} from {self.node} for {self.lifetime_s:.0f} s"


@dataclass(frozen=True, slots=True)
class ClearBan:
    """Remove the ban of `resource` on `node` (only that node's: never an operator's other
    move/ban constraints)."""

    resource: str
    node: str

    def describe(self) -> str:
        return f"clear the ban of {self.resource} from {self.node}"


@dataclass(frozen=True, slots=True)
class ClearExpired:
    """Remove the expired move/ban constraints of `resource` (lifetimes are wall-clock)."""

    resource: str

    def describe(self) -> str:
        return f"clear expired constraints of {self.resource}"


Change = SetNodeAttribute | Ban | ClearBan | ClearExpired


# --- views parsed from XML ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BanInfo:
    id: str
    resource: str
    node: str
    end: datetime | None  # None: no lifetime (a permanent ban)

    def active(self, now: datetime) -> bool:
        return self.end is None or self.end > now


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    online: bool
    standby: bool
    maintenance: bool
    health: str  # green / yellow / red as Pacemaker combines the #health-* attributes


@dataclass(frozen=True, slots=True)
class ResourceView:
    """Where a resource's members are active: (member id, nodes) pairs."""

    id: str
    kind: str  # group, primitive, clone, bundle
    members: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def running_on(self) -> frozenset[str]:
        """Nodes where the resource runs: for a group or primitive every member must be active
        there; for a clone or bundle any instance counts."""
        if not self.members:
            return frozenset()
        sets = [frozenset(nodes) for _, nodes in self.members]
        if self.kind in ("clone", "bundle"):
            return frozenset().union(*sets)
        return frozenset.intersection(*sets)

    @property
    def running(self) -> bool:
        return bool(self.running_on)


@dataclass(frozen=True, slots=True)
class ClusterView:
    nodes: tuple[NodeView, ...]
    resources: tuple[ResourceView, ...]

    def resource(self, rid: str) -> ResourceView | None:
        return next((r for r in self.resources if r.id == rid), None)

    def node(self, name: str) -> NodeView | None:
        return next((n for n in self.nodes if n.name == name), None)

    @classmethod
    def from_xml(cls, status: ET.Element, *, tool: str = "crm_mon") -> ClusterView:
        """From a `<cluster_status>`/`<revised_cluster_status>` of crm_simulate, or the root of
        `crm_mon --output-as=xml`. ClusterError (naming `tool`) for resources nested deeper
        than Pacemaker nests them."""
        nodes = tuple(
            NodeView(
                name=n.get("name", ""),
                online=n.get("online") == "true",
                standby=n.get("standby") == "true",
                maintenance=n.get("maintenance") == "true",
                health=n.get("health", "green"),
            )
            for n in status.findall("./nodes/node")
        )
        views: list[ResourceView] = []
        section = status.find("resources")
        if section is not None:
            for top in section:
                views.extend(_resource_views(top, tool))
        return cls(nodes, tuple(views))


def _active_nodes(resource: ET.Element) -> tuple[str, ...]:
    if resource.get("active") != "true" or resource.get("role") == "Stopped":
        return ()
    return tuple(sorted(n.get("name", "") for n in resource.findall("node")))


#: Pacemaker nests at most a clone or bundle around a group around primitives; output nested
#: deeper is not the tools' (and would exhaust the recursion of `_resource_views`).
_MAX_RESOURCE_NESTING = 8


def _resource_views(elem: ET.Element, tool: str, depth: int = 0) -> Iterator[ResourceView]:
    """A view for this element and every group/primitive nested in it, so a resource id can
    name a group, a primitive (inside a group or not) or a clone."""
    if depth > _MAX_RESOURCE_NESTING:
        raise ClusterError(f"{tool}: resources nested more than {_MAX_RESOURCE_NESTING} deep")
    rid = elem.get("id", "")
    if elem.tag == "resource":
        yield ResourceView(rid, "primitive", ((rid, _active_nodes(elem)),))
        return
    if elem.tag not in ("group", "clone", "bundle"):
        return
    members = tuple((r.get("id", ""), _active_nodes(r)) for r in elem.iter("resource"))
    yield ResourceView(rid, elem.tag, members)
    for child in elem:
        yield from _resource_views(child, tool, depth + 1)


@dataclass(frozen=True, slots=True)
class Simulation:
    """crm_simulate's view before (`current`) and after (`revised`) the transition."""

    current: ClusterView
    revised: ClusterView


@dataclass(frozen=True, slots=True)
class CibSnapshot:
    """A parsed `cibadmin --query`, plus the private file copy it was saved to."""

    path: Path
    root: ET.Element = field(compare=False, repr=False)

    @property
    def have_quorum(self) -> bool:
        return self.root.get("have-quorum", "0").lower() in ("1", "true", "yes", "on")

    def cluster_property(self, name: str) -> str | None:
        for nv in self.root.iterfind("./configuration/crm_config/cluster_property_set/nvpair"):
            if nv.get("name") == name:
                return nv.get("value")
        return None

    def has_node(self, name: str) -> bool:
        return self._node(name) is not None

    def _node(self, name: str) -> ET.Element | None:
        for node in self.root.iterfind("./configuration/nodes/node"):
            if node.get("uname") == name:
                return node
        return None

    def node_attribute(self, node: str, name: str) -> str | None:
        """A permanent node attribute (configuration section)."""
        elem = self._node(node)
        if elem is None:
            return None
        for nv in elem.iterfind("./instance_attributes/nvpair"):
            if nv.get("name") == name:
                return nv.get("value")
        return None

    def joined(self, node: str) -> bool:
        """Has `node` joined the cluster, as the CIB's status section says (its node_state is
        there and its controller is a member)? A node whose cluster stack is still starting
        has no node_state yet, or one with join="pending"/"down": transient attributes cannot
        be set on it then (crm_attribute: "No such device or address")."""
        elem = self._node(node)
        node_id = elem.get("id") if elem is not None else None
        for state in self.root.iterfind("./status/node_state"):
            if state.get("uname") == node or (node_id is not None and state.get("id") == node_id):
                # Pacemaker 2.1.5 says crmd="online"; later versions put a timestamp there.
                crmd = state.get("crmd", "")
                return state.get("join") == "member" and crmd not in ("", "offline")
        return False

    def transient_attribute(self, node: str, name: str) -> str | None:
        """A transient node attribute (status section, lifetime "reboot")."""
        elem = self._node(node)
        node_id = elem.get("id") if elem is not None else None
        for state in self.root.iterfind("./status/node_state"):
            if state.get("uname") != node and (node_id is None or state.get("id") != node_id):
                continue
            for nv in state.iterfind("./transient_attributes/instance_attributes/nvpair"):
                if nv.get("name") == name:
                    return nv.get("value")
        return None

    def bans(self, resource: str) -> dict[str, BanInfo]:
        return _bans(self.root.find("./configuration/constraints"), resource)


def _bans(constraints: ET.Element | None, resource: str) -> dict[str, BanInfo]:
    found: dict[str, BanInfo] = {}
    if constraints is None:
        return found
    prefix = f"cli-ban-{resource}-on-"
    for loc in constraints.iterfind("rsc_location"):
        cid = loc.get("id", "")
        if loc.get("rsc") != resource or not cid.startswith(prefix):
            continue
        end: datetime | None = None
        for expr in loc.iter("date_expression"):
            text = expr.get("end")
            if expr.get("operation") == "lt" and text:
                with contextlib.suppress(ValueError):
                    end = datetime.fromisoformat(text)
                    if end.tzinfo is None:
                        # Pacemaker reads a date without an offset as local time (crm_time);
                        # a naive value would make active() compare naive with aware.
                        end = end.astimezone()
        node = cid.removeprefix(prefix)
        found[node] = BanInfo(cid, resource, node, end)
    return found


def _parse(result: CallResult, root_tag: str) -> ET.Element:
    try:
        root = ET.fromstring(result.stdout)
    except ET.ParseError:
        raise ClusterError(f"{result.tool}: output is not XML") from None
    if root.tag != root_tag:
        raise ClusterError(f"{result.tool}: output is <{root.tag}>, not <{root_tag}>")
    return root


def _require(result: CallResult) -> CallResult:
    if not result.ok:
        raise ClusterError(result.summary(), rc=None if result.timed_out else result.rc)
    return result


class PacemakerTools:
    """Pacemaker's command-line tools, run safely. The seam for tests: `bin_dir` is searched
    first for every tool, so a test puts a failing, hanging or garbage-printing wrapper there.
    """

    def __init__(
        self,
        *,
        cib_file: Path | str | None = None,
        bin_dir: Path | str | None = None,
        policy: ToolPolicy | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = dict(os.environ if env is None else env)
        chosen = cib_file if cib_file is not None else base.get("CIB_file") or None
        self.cib_file: Path | None = Path(chosen) if chosen else None
        self.mode = Mode.FILE if self.cib_file is not None else Mode.LIVE
        base.pop("CIB_file", None)  # set per call, explicitly
        base["LC_ALL"] = "C"
        self._env = base
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.policy = policy or ToolPolicy()
        self._sleep = sleep

    def __repr__(self) -> str:
        where = self.cib_file if self.cib_file is not None else "live cluster"
        return f"PacemakerTools({self.mode}, {where})"

    # --- running ------------------------------------------------------------------------------

    def which(self, tool: str) -> str | None:
        if self.bin_dir is not None:
            candidate = self.bin_dir / tool
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        search = self._env.get("PATH", os.defpath) + ":/usr/sbin:/sbin"
        return shutil.which(tool, path=search)

    def run(
        self, tool: str, args: Sequence[str], *, cib_file: Path | None = None, retry: bool = True
    ) -> CallResult:
        """Run `tool args...` with the policy's timeout; retry transient failures (timeouts,
        "try again", "not connected") within the policy's attempts and total time."""
        if tool not in TOOLS:
            raise ValueError(f"not a Pacemaker tool sipwatch uses: {tool!r}")
        executable = self.which(tool)
        if executable is None:
            return CallResult(tool, None, error="not installed (not on PATH)")
        env = dict(self._env)
        target = cib_file if cib_file is not None else self.cib_file
        if target is not None:
            env["CIB_file"] = str(target)
        policy = self.policy
        deadline = time.monotonic() + policy.total_s
        attempts = 0

        def attempt() -> CallResult:
            nonlocal attempts
            attempts += 1
            budget = min(policy.timeout_s, max(0.05, deadline - time.monotonic()))
            return run_tool(tool, executable, args, env=env, timeout_s=budget)

        def last(state: RetryCallState) -> CallResult:
            assert state.outcome is not None
            result: CallResult = state.outcome.result()
            return result

        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts if retry else 1)
            | stop_before_delay(policy.total_s),
            wait=wait_exponential(multiplier=policy.backoff_s, max=2.0),
            retry=retry_if_result(lambda r: bool(r.transient)),
            retry_error_callback=last,
            sleep=self._sleep,
        )
        result: CallResult = retrying(attempt)
        if attempts > 1:
            result = CallResult(
                result.tool,
                result.rc,
                result.stdout,
                result.stderr,
                result.duration_s,
                result.timed_out,
                attempts,
                result.error,
            )
        return result

    # --- reading ------------------------------------------------------------------------------

    def local_node(self) -> str:
        """This node's name in the cluster (`crm_node -n`)."""
        result = _require(self.run("crm_node", ["--name"]))
        name = result.stdout.strip()
        if not name or len(name.split()) != 1:
            raise ClusterError("crm_node: did not print a node name")
        return name

    def snapshot(self, workdir: Path) -> CibSnapshot:
        """`cibadmin --query`, parsed, and saved to `workdir/cib.xml` for simulation. The copy
        may hold secrets from resource parameters: `workdir` must be private (0700)."""
        result = _require(self.run("cibadmin", ["--query"]))
        root = _parse(result, "cib")
        path = workdir / "cib.xml"
        path.write_text(result.stdout)
        return CibSnapshot(path, root)

    def simulate(self, cib: Path) -> Simulation:
        """What Pacemaker would do with the CIB in file `cib` (`crm_simulate -S`, not -X: the
        file is left as it is)."""
        result = _require(
            self.run(
                "crm_simulate",
                ["--xml-file", str(cib), "--simulate", "--output-as=xml"],
                cib_file=cib,
            )
        )
        root = _parse(result, "pacemaker-result")
        current = root.find("cluster_status")
        if current is None:
            raise ClusterError("crm_simulate: no <cluster_status> in its output")
        revised = root.find("revised_cluster_status")
        return Simulation(
            ClusterView.from_xml(current, tool="crm_simulate"),
            ClusterView.from_xml(revised if revised is not None else current, tool="crm_simulate"),
        )

    def node_attribute(
        self, node: str, name: str, *, attrd: bool = False, cib_file: Path | None = None
    ) -> str | None:
        """A transient node attribute's value, None when unset."""
        if self._via_attrd(attrd, cib_file):
            result = self.run(
                "attrd_updater", ["--query", "--name", name, "--node", node, "--output-as=xml"]
            )
            if result.rc in _RC_ATTRD_NO_SUCH:
                return None
            root = _parse(_require(result), "pacemaker-result")
            for attr in root.iter("attribute"):
                if attr.get("name") == name and attr.get("host", node) == node:
                    return attr.get("value") or None  # attrd's "delete" leaves ""
            return None
        return self._crm_attribute_query(
            ["--node", node, "--name", name, "--lifetime", "reboot"], cib_file=cib_file
        )

    def fence_history(self) -> tuple[FenceEvent, ...] | None:
        """Pacemaker's fencing history, newest first (`crm_mon --fence-history=3`: failed
        and pending fences too; `stonith_admin --history '*'` was seen here to leave failed
        ones out); None with a CIB file: the history lives in the fencer of a running
        cluster, not the CIB."""
        if self.cib_file is not None:
            return None
        result = _require(self.run("crm_mon", ["-1", "--fence-history=3", "--output-as=xml"]))
        return parse_fence_history(result.stdout)

    def cluster_option(self, name: str) -> str | None:
        """A cluster property (crm_config), None when unset (Pacemaker's default applies)."""
        return self._crm_attribute_query(["--type", "crm_config", "--name", name])

    def _crm_attribute_query(self, args: list[str], *, cib_file: Path | None = None) -> str | None:
        """`crm_attribute ARGS --query`: the value, None when unset."""
        result = self.run("crm_attribute", [*args, "--query", "--output-as=xml"], cib_file=cib_file)
        if result.rc == _RC_NO_SUCH_OBJECT:
            return None
        found = _parse(_require(result), "pacemaker-result").find("attribute")
        return (found.get("value") or None) if found is not None else None

    def bans(self, resource: str, *, cib_file: Path | None = None) -> dict[str, BanInfo]:
        result = _require(
            self.run("cibadmin", ["--query", "--scope", "constraints"], cib_file=cib_file)
        )
        return _bans(_parse(result, "constraints"), resource)

    # --- changing -----------------------------------------------------------------------------

    def apply(self, change: Change, *, cib_file: Path | None = None) -> None:
        """Make one change, to the cluster (or to the CIB file `cib_file`). ClusterError if the
        tool failed; the change may then be half-known: callers check with `holds()`."""
        tool, args = self._command(change, cib_file)
        _require(self.run(tool, args, cib_file=cib_file))

    def holds(self, change: Change, *, cib_file: Path | None = None) -> bool:
        """Is the change in effect now (read back from the cluster / file)?"""
        match change:
            case SetNodeAttribute(node=node, name=name, value=value, attrd=attrd):
                current = self.node_attribute(node, name, attrd=attrd, cib_file=cib_file)
                return current == value
            case Ban(resource=resource, node=node):
                return node in self.bans(resource, cib_file=cib_file)
            case ClearBan(resource=resource, node=node):
                return node not in self.bans(resource, cib_file=cib_file)
            case ClearExpired():
                return True
        raise TypeError(f"unknown change {change!r}")  # pragma: no cover

    def _via_attrd(self, attrd: bool, cib_file: Path | None) -> bool:
        return attrd and cib_file is None and self.mode is Mode.LIVE

    def _command(self, change: Change, cib_file: Path | None) -> tuple[str, list[str]]:
        match change:
            case SetNodeAttribute(node=node, name=name, value=value, attrd=attrd):
                if self._via_attrd(attrd, cib_file):
                    verb = ["--update", value] if value is not None else ["--delete"]
                    return "attrd_updater", ["--name", name, "--node", node, *verb]
                verb = ["--update", value] if value is not None else ["--delete"]
                return "crm_attribute", [
                    "--node",
                    node,
                    "--name",
                    name,
                    "--lifetime",
                    "reboot",
                    *verb,
                ]
            case Ban(resource=resource, node=node, lifetime_s=lifetime_s):
                # Always --node: without it crm_resource bans wherever the resource runs now.
                return "crm_resource", [
                    "--ban",
                    "--resource",
                    resource,
                    "--node",
                    node,
                    "--lifetime",
                    iso_duration(lifetime_s),
                ]
            case ClearBan(resource=resource, node=node):
                return "crm_resource", ["--clear", "--resource", resource, "--node", node]
            case ClearExpired(resource=resource):
                return "crm_resource", ["--clear", "--expired", "--resource", resource]
        raise TypeError(f"unknown change {change!r}")  # pragma: no cover
