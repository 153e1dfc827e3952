"""The second part of `make demo`: the mission itself, in the three-node lab (testbed/lab.py).

A real corosync/Pacemaker cluster in network namespaces, Kamailio as the PBX behind a VIP,
`sipwatch run` on every node. The PBX on the active node hangs (its whole process group
SIGSTOPped: the process exists, the stock agent sees nothing for a minute); sipwatch's verdict
turns red, the VIP and the PBX move, the phone (the client namespace) is answered by the new
node; the old node is healed and stays a standby. Narrated with timestamps and the commands
an operator would type. Needs root and network namespaces; everything it made is removed
when it ends, on Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from testbed.lab import PREFIX, VIP, Lab, LabConfig
from testbed.netns import require_root

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "failover.json"


def skipped_because() -> str:
    """Why the lab part cannot run here ("" when it can)."""
    return require_root()


def stock_hang_quote() -> str:
    """The stock agent's hang failover from the last benchmark run, with its date."""
    try:
        data = json.loads(RESULTS.read_text())
        hang = data["stock-10s"]["hang"]
        return (
            f"the stock ocf:heartbeat:kamailio agent (10 s monitor) took p50 {hang['p50']:.1f} s "
            f"(max {hang['max']:.1f} s, N={hang['n']}) for the same hang in the last benchmark "
            f"run ({data['when']}, bench/results/failover.json); not rerun here: a minute"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "no stock-agent benchmark result on record (make lab-bench)"


def run_lab_demo(say: Callable[[str], None]) -> int:
    """The narrated failover; 0 when every step did what it says."""
    started = time.monotonic()

    def step(text: str) -> None:
        say(f"[{time.monotonic() - started:6.2f} s] {text}")

    lab = Lab(LabConfig())
    try:
        step("== the three-node lab: corosync + Pacemaker + Kamailio + sipwatch, VIP " + VIP)
        lab.up()
        active = lab.reset()
        step(f"$ crm_mon -1   ->  g_pbx (VIP + Kamailio) started on {active}")
        step(f"$ ip -n {PREFIX}-{active} addr  ->  {VIP} held by {', '.join(lab.vip_holders())}")
        step(f"the phones' OPTIONS to sip:{VIP} (from {PREFIX}-cl)  ->  answered by "
             f"{lab.client_options()}")  # fmt: skip
        step(f"== fault: the PBX on {active} hangs (kill -STOP its whole process group)")
        failover = lab.measure_failover("hang")
        new = failover.new
        reds = [r for r in lab.audit(failover.old) if r.get("summary", "").endswith("=red on "
                + failover.old)]  # fmt: skip
        if reds:
            step(f"sipwatch on {failover.old}: red, {reds[-1].get('detail', '')[:110]}")
        step(f"$ crm_mon -1   ->  g_pbx started on {', '.join(lab.placement())}")
        twice = "never" if failover.max_holders <= 1 else "YES"
        step(f"$ ip -n {PREFIX}-{new} addr  ->  {VIP} held by {', '.join(lab.vip_holders())}"
             f" (VIP on two nodes at once: {twice})")  # fmt: skip
        step(f"the phones are answered by {new} {failover.seconds:.2f} s after the hang")
        time.sleep(3)
        holders = lab.vip_holders()
        step(f"{failover.old} healed (its stop had killed the frozen PBX): a standby now, it "
             f"took nothing back; VIP on {', '.join(holders)}")  # fmt: skip
        if reds:
            r = reds[-1]
            step(f"audit ({failover.old}): {r.get('at', '')[:19]} {r.get('action')} "
                 f"{r.get('result')} failover={r.get('failover')}: {r.get('summary')}")  # fmt: skip
        step(stock_hang_quote())
        ok = failover.new != failover.old and failover.max_holders <= 1 and holders == [new]
        return 0 if ok and reds else 1
    finally:
        step("== removing the lab (every process by PID, every namespace)")
        lab.down()
