"""`sipwatch cluster`: look at, and act on, this node's place in the Pacemaker cluster.

Owns: the command's arguments and output. Everything it does goes through a ClusterAgent
(sipwatch.cluster), so every rail applies. Dry run unless `--apply`: without it the command
reports what would be done (or which rail would refuse) and changes nothing.

    sipwatch cluster status   [--json]
    sipwatch cluster publish  green|yellow|red   [--apply]
    sipwatch cluster move-away --reason TEXT     [--apply]
    sipwatch cluster clear                       [--apply]

Exit codes: 0 done, unchanged or (dry run) would be done; 1 a tool failed; 3 refused by a
rail; 2 usage or local error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sipwatch.exitcodes import CLUSTER_FAILED as EXIT_FAILED
from sipwatch.exitcodes import CLUSTER_LOCAL as EXIT_LOCAL
from sipwatch.exitcodes import CLUSTER_OK as EXIT_OK
from sipwatch.exitcodes import CLUSTER_REFUSED as EXIT_REFUSED


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="this node in the Pacemaker cluster: status, publish, move-away, clear",
        description="Act on this node's place in the Pacemaker cluster through a cluster "
        "agent, every safety rail applied. A dry run unless --apply. Exit: 0 done / "
        "unchanged / would, 1 failed, 3 refused by a rail, 2 usage or local error.",
    )
    sub = parser.add_subparsers(dest="cluster_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--resource", default="g_pbx", help="the VIP + PBX group (g_pbx)")
    common.add_argument("--node", help="this node's name (default: crm_node -n)")
    common.add_argument(
        "--agent",
        choices=("health_attribute", "ban", "standby"),
        default="health_attribute",
        help="how to act (default health_attribute)",
    )
    common.add_argument("--cib-file", metavar="F", help="work on a CIB file, not the cluster")
    common.add_argument("--freeze-file", metavar="F", help="default /etc/sipwatch/freeze")
    common.add_argument("--budget", type=int, default=3, help="failovers per hour (3)")
    common.add_argument("--cooldown", type=float, default=300.0, metavar="S", help="(300)")
    common.add_argument("--lifetime", type=float, default=1800.0, metavar="S", help="ban (1800)")
    common.add_argument("--timeout", type=float, default=10.0, metavar="S", help="per tool (10)")
    common.add_argument("--audit-log", metavar="F", help="append audit records (JSON lines)")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--apply", action="store_true", help="really change the cluster")
    sub.add_parser("status", parents=[common], help="what the agent sees")
    publish = sub.add_parser("publish", parents=[common], help="publish this node's verdict")
    publish.add_argument("verdict", choices=("green", "yellow", "red"))
    publish.add_argument("--reason", default="", help="why (goes to the audit record)")
    move = sub.add_parser("move-away", parents=[common], help="move the resource off here")
    move.add_argument("--reason", required=True, help="why (goes to the audit record)")
    sub.add_parser("clear", parents=[common], help="undo what the agent set for this node")


def run(args: argparse.Namespace) -> int:
    from sipwatch.cluster import (
        DEFAULT_FREEZE_FILE,
        ActionOutcome,
        AuditLog,
        PacemakerTools,
        RailConfig,
        ToolPolicy,
        make_agent,
    )
    from sipwatch.errors import ClusterError
    from sipwatch.model import Verdict

    try:
        policy = ToolPolicy(timeout_s=args.timeout, total_s=max(args.timeout * 3, 1.0))
        rails = RailConfig(
            budget=args.budget,
            cooldown_s=args.cooldown,
            freeze_file=_path(args.freeze_file) or DEFAULT_FREEZE_FILE,
        )
    except ValueError as exc:
        print(f"sipwatch: {exc}", file=sys.stderr)
        return EXIT_LOCAL
    tools = PacemakerTools(cib_file=args.cib_file, policy=policy)
    node = args.node
    if node is None:
        try:
            node = tools.local_node()
        except ClusterError as exc:
            print(f"sipwatch: this node's name: {exc} (give --node)", file=sys.stderr)
            return EXIT_LOCAL
    extra: dict[str, Any] = {"lifetime_s": args.lifetime} if args.agent == "ban" else {}
    try:
        agent = make_agent(
            args.agent,
            tools,
            node=node,
            resource=args.resource,
            dry_run=not args.apply,
            rails=rails,
            audit=AuditLog(path=args.audit_log),
            **extra,
        )
    except ValueError as exc:
        print(f"sipwatch: {exc}", file=sys.stderr)
        return EXIT_LOCAL

    if args.cluster_command == "status":
        status = agent.status()
        _print(status.to_dict(), args.json, _status_text(status.to_dict()))
        return EXIT_OK if status.ok else EXIT_FAILED
    if args.cluster_command == "publish":
        record = agent.publish_health(Verdict(args.verdict), reason=args.reason)
    elif args.cluster_command == "move-away":
        record = agent.move_away(args.reason)
    else:
        record = agent.clear()
    data = record.to_dict()
    rail = f" by {data['rail']}" if data["rail"] else ""
    text = f"{data['result']}{rail}: {data['summary']}" + (
        f" ({data['detail']})" if data["detail"] else ""
    )
    _print(data, args.json, text)
    if record.result is ActionOutcome.REFUSED:
        return EXIT_REFUSED
    return EXIT_OK if record.ok else EXIT_FAILED


def _path(value: str | None) -> Any:
    from pathlib import Path

    return Path(value) if value else None


def _print(data: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        import json

        print(json.dumps(data, sort_keys=True))
    else:
        print(text)


def _status_text(d: dict[str, Any]) -> str:
    if not d["ok"]:
        return f"{d['node']}: cannot read the cluster: {d['error']}"
    nodes = ", ".join(
        f"{n['name']}({'online' if n['online'] else 'OFFLINE'}"
        f"{', standby' if n['standby'] else ''}, {n['health']})"
        for n in d["nodes"]
    )
    return (
        f"node {d['node']} ({d['mode']}): quorum {'yes' if d['have_quorum'] else 'NO'}; "
        f"{d['resource']} on {', '.join(d['running_on']) or 'nowhere'}; "
        f"health {d['health'] or 'unset'}; banned {d['banned']}; standby {d['standby']}; "
        f"frozen {d['frozen'] or 'no'}; failovers this hour {d['failovers_used']}\n"
        f"nodes: {nodes}\n"
        f"{d['fencing_summary']}"
    )
