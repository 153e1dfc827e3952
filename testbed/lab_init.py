"""PID 1 of one lab node (see testbed.lab): private mounts, hostname, zombie reaping.

Started by the lab as
    ip netns exec NS unshare --mount --propagation private --uts --pid --fork --kill-child
        --mount-proc PYTHON -m testbed.lab_init NODE_DIR HOSTNAME
it bind-mounts the node's private directories over the cluster stack's paths, mounts tmpfs
over /run and /dev/shm, sets the hostname, writes NODE_DIR/ready and then only reaps
children: every daemon the lab starts in this node (corosync, pacemakerd, the PBX, sipwatch)
is orphaned to it. Killing this process (the lab does, by PID) ends every process of the
node at once: it is the init of the node's PID namespace.

Must not know: what runs in the node (the lab starts it with nsenter).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: node-dir subdirectory -> the path it is mounted over inside the node
BINDS = {
    "etc-corosync": "/etc/corosync",
    "var-lib-corosync": "/var/lib/corosync",
    "var-lib-pacemaker": "/var/lib/pacemaker",
    "log-pacemaker": "/var/log/pacemaker",
    "log-corosync": "/var/log/corosync",
    "resource.d": "/usr/lib/ocf/resource.d",
}
RUN_DIRS = ("/run/sipwatch-lab", "/run/kamailio", "/run/resource-agents", "/run/crm")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, timeout=10)


def setup(node_dir: Path, hostname: str) -> None:
    for sub, target in BINDS.items():
        _mount("--bind", str(node_dir / sub), target)
    if (node_dir / "fence").is_dir():  # mode fencing: fence_swlab among the node's /usr/sbin
        # Pacemaker looks for fence agents in /usr/sbin only; a read-only overlay adds the
        # lab's agent there inside this node's mount namespace, and nowhere else.
        _mount("-t", "overlay", "overlay", "-o", f"lowerdir={node_dir / 'fence'}:/usr/sbin",
               "/usr/sbin")  # fmt: skip
    _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
    _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/dev/shm")
    for d in RUN_DIRS:
        os.makedirs(d, exist_ok=True)
    subprocess.run(["hostname", hostname], check=True, timeout=10)


def reap_forever() -> None:
    # SIGTERM to PID 1 of a PID namespace is ignored unless handled: exit on it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.5)


def _say(node_dir: Path, text: str) -> None:
    """NODE_DIR/ready, whole or not at all: the lab polls for it and must never read it
    half-written (an empty file once read as a failed init)."""
    tmp = node_dir / "ready.tmp"
    tmp.write_text(text)
    tmp.rename(node_dir / "ready")


def main() -> None:
    node_dir, hostname = Path(sys.argv[1]), sys.argv[2]
    try:
        setup(node_dir, hostname)
    except Exception as exc:
        _say(node_dir, f"error: {exc}\n")
        raise
    _say(node_dir, f"ok {os.getpid()}\n")
    reap_forever()


if __name__ == "__main__":
    main()
