"""The quorum guard: a node whose partition loses quorum gives up the VIP at once.

Why: this design runs without fencing. When the active node is cut off, corosync tells both
sides of the split at the same moment; the majority then starts the VIP elsewhere, while the
cut-off node's Pacemaker must first elect itself DC, integrate, and run the scheduler before
its no-quorum stop. The lab measured that stop arriving up to about 1 s after the majority's
start: for that second two nodes held the VIP, and a partition that healed inside it put both
on the LAN answering ARP for the same address. sipwatch hears corosync's "Quorate: No" as soon
as Pacemaker does, and removes the address itself — the same thing Pacemaker is about to do
(no-quorum-policy=stop), a second sooner. Pacemaker's stop that follows finds it gone and
succeeds. The guard only ever removes the VIP, never adds it, and only when
no-quorum-policy is "stop" (the default): with "freeze" or "ignore" a partition is meant to
keep what it runs.

Owns: watching corosync's quorum (`corosync-quorumtool -m`, line-buffered through `stdbuf`,
restarted with a bounded backoff when it exits; `sipwatch.subproc.Lines` starts, kills and
reaps it), parsing its output (pure), the release itself (sipwatch.netlink), and its audit
record. Must not know: the policy engine or SIP.

    [cluster]
    release_vip_without_quorum = true   # default false
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sipwatch.cluster.audit import ActionOutcome, AuditLog, AuditRecord
from sipwatch.errors import StartError
from sipwatch.subproc import Lines

__all__ = ["QuorumGuard", "parse_quorate", "quorum_events"]

_log = logging.getLogger("sipwatch.cluster")

_QUORATE = re.compile(r"^Quorate:\s+(Yes|No)\s*$")
RESTART_S = (1.0, 10.0)  # backoff between restarts of the quorum tool: first, most
ACTION = "release_vip"


def parse_quorate(line: str) -> bool | None:
    """True / False for corosync-quorumtool's "Quorate: Yes|No" line, None for any other."""
    m = _QUORATE.match(line.strip())
    return None if m is None else m.group(1) == "Yes"


def quorum_argv(tool: str) -> list[str] | None:
    """`stdbuf -oL TOOL -m`: the tool writes through C stdio, which holds a pipe's output in a
    4 KiB buffer — without stdbuf a quorum change would sit there unread. None when the tool
    is not installed."""
    exe = shutil.which(tool, path=os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin")
    if exe is None:
        return None
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", exe, "-m"] if stdbuf else [exe, "-m"]


async def quorum_events(
    argv: list[str], *, restart_s: tuple[float, float] = RESTART_S
) -> AsyncIterator[bool | None]:
    """Yield the partition's quorum each time corosync reports it (True / False; the first is
    the current state), and None whenever the tool ends (corosync down or restarting) before
    it is started again, after a backoff doubling from restart_s[0] to restart_s[1]. Runs
    until the consumer stops iterating; the tool's process group is killed then."""
    delay = restart_s[0]
    while True:
        try:
            async with Lines(argv) as lines:
                async for line in lines:
                    value = parse_quorate(line.decode("utf-8", "replace"))
                    if value is not None:
                        delay = restart_s[0]  # it worked: the next restart comes quickly
                        yield value
        except StartError as exc:  # removed or not executable since it was found
            _log.error("event=quorum_tool_failed error=%r", exc.reason)
        yield None
        await asyncio.sleep(delay)
        delay = min(delay * 2, restart_s[1])


@dataclass
class QuorumGuard:
    """Releases the VIP (`address`, optionally only from `interface`) when corosync reports
    that this node's partition lost quorum. `read_policy` returns the cluster's
    no-quorum-policy (None when it cannot be read; unset means Pacemaker's default, "stop")
    and runs in a thread: it calls crm tools. `on_release` is told after a release (the
    daemon re-probes at once)."""

    address: str
    interface: str | None
    node: str
    resource: str
    audit: AuditLog
    read_policy: Callable[[], str | None]
    argv: list[str] | None
    dry_run: bool = False
    on_release: Callable[[str], None] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    quorate: bool | None = None
    policy: str | None = None
    _refresh: asyncio.Task[None] | None = field(default=None, repr=False)

    async def run(self, stop: asyncio.Event) -> None:
        if self.argv is None:
            _log.error("event=quorum_guard_off reason=%r", "corosync-quorumtool not found")
            return
        events = quorum_events(self.argv)
        try:
            while not stop.is_set():
                nxt = asyncio.ensure_future(anext(events))
                stopped = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await nxt
                    return
                await self.observe(nxt.result())
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def observe(self, quorate: bool | None) -> None:
        previous, self.quorate = self.quorate, quorate
        if quorate is None:
            if previous is not None:
                _log.warning("event=quorum_unknown reason=%r", "corosync-quorumtool ended")
            return
        if quorate:
            if previous is not True:
                _log.info("event=quorum quorate=yes")
            # Read the policy while the cluster is whole, in the background: when quorum
            # goes, the guard must act at once, not wait for a crm tool (which may hang).
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._read_policy())
            return
        _log.warning("event=quorum quorate=no")
        if self.policy is None:  # never read yet: nothing to go on but a read now
            if self._refresh is not None and not self._refresh.done():
                await self._refresh
            else:
                await self._read_policy()
        await self.release()

    async def _read_policy(self) -> None:
        self.policy = await asyncio.to_thread(self.read_policy) or self.policy

    async def release(self) -> AuditRecord | None:
        """Remove the VIP if this node holds it and no-quorum-policy says the partition stops
        its resources. Returns the audit record of what was done (None: nothing to do)."""
        from sipwatch.netlink import delete_address, vip_state

        policy = self.policy
        started = asyncio.get_running_loop().time()
        try:
            state = await vip_state(self.address, self.interface)
        except OSError as exc:
            return self._record(ActionOutcome.FAILED, "release VIP", f"netlink: {exc}", started)
        if not state.held or (self.interface and state.interface != self.interface):
            return None
        where = f"VIP {self.address}/{state.prefixlen} from {state.interface}"
        if policy is None:
            return self._record(
                ActionOutcome.REFUSED,
                f"release {where}",
                "no-quorum-policy could not be read: left to Pacemaker",
                started,
            )
        if policy not in ("stop", "demote"):
            _log.info("event=quorum_guard_skip no_quorum_policy=%s", policy)
            return None
        why = (
            "this partition lost quorum; Pacemaker stops the group here "
            f"(no-quorum-policy={policy})"
        )
        if self.dry_run:
            return self._record(ActionOutcome.WOULD, f"release {where}", why, started, dry=True)
        try:
            await delete_address(self.address, state.ifindex, state.prefixlen)
        except OSError as exc:
            return self._record(
                ActionOutcome.FAILED, f"release {where}", f"{why}; netlink: {exc}", started
            )
        record = self._record(ActionOutcome.DONE, f"release {where}", why, started)
        if self.on_release is not None:
            self.on_release("quorum lost")
        return record

    def _record(
        self, result: ActionOutcome, summary: str, detail: str, started: float, *, dry: bool = False
    ) -> AuditRecord:
        record = AuditRecord(
            at=self.clock(),
            action=ACTION,
            agent="quorum_guard",
            node=self.node,
            resource=self.resource,
            result=result,
            summary=summary,
            detail=detail,
            dry_run=dry,
            failover=result is ActionOutcome.DONE,
            duration_s=max(0.0, asyncio.get_running_loop().time() - started),
        )
        self.audit.append(record)
        level = logging.WARNING if result is not ActionOutcome.FAILED else logging.ERROR
        _log.log(
            level,
            "event=cluster_action action=%s agent=quorum_guard node=%s result=%s dry_run=%s "
            "summary=%r detail=%r",
            ACTION,
            self.node,
            result,
            dry,
            summary,
            detail,
        )
        return record
