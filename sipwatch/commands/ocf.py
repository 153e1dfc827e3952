"""`sipwatch ocf install [--root DIR]`: install the OCF resource agent ocf:sipwatch:sipwatch.

Owns: copying the agent shipped in the package (sipwatch/ocf/sipwatch, POSIX sh) to
DIR/usr/lib/ocf/resource.d/sipwatch/sipwatch, mode 0755, atomically; the agent's default for
its `sipwatch` parameter becomes the sipwatch running this command (so an install in a venv
works without setting the parameter). Must not know: what the agent does.

Exit codes: 0 installed, 2 could not install (the message says why).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

AGENT_DIR = "usr/lib/ocf/resource.d/sipwatch"
AGENT_NAME = "sipwatch"
_DEFAULT_LINE = 'OCF_RESKEY_sipwatch_default="sipwatch"'
_UNSAFE = set('"$`\\\n')


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ocf",
        help="the OCF resource agent ocf:sipwatch:sipwatch",
        description="Install the OCF resource agent (health attribute or SIP-aware monitor).",
    )
    sub = parser.add_subparsers(dest="ocf_command", required=True)
    install = sub.add_parser(
        "install",
        help="install the agent to ROOT/usr/lib/ocf/resource.d/sipwatch/sipwatch",
        description="Install the agent to ROOT/usr/lib/ocf/resource.d/sipwatch/sipwatch "
        "(mode 0755). Its `sipwatch` parameter defaults to the sipwatch running this.",
    )
    install.add_argument("--root", default="/", metavar="DIR", help="install below DIR")
    install.add_argument(
        "--sipwatch",
        metavar="PATH",
        help="the sipwatch executable the agent runs by default (default: this one)",
    )
    sub.add_parser("show", help="print the agent script")


def run(args: argparse.Namespace) -> int:
    if args.ocf_command == "show":
        sys.stdout.write(agent_text())
        return 0
    try:
        from pathlib import Path

        path = install(Path(args.root), sipwatch=args.sipwatch)
    except (OSError, ValueError) as exc:
        print(f"sipwatch: cannot install the OCF agent: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def agent_text() -> str:
    from importlib.resources import files

    return files("sipwatch").joinpath("ocf", AGENT_NAME).read_text(encoding="utf-8")


def this_sipwatch() -> str:
    """The sipwatch executable next to this Python (a venv's bin/), else the one on PATH."""
    import os
    import shutil
    from pathlib import Path

    beside = Path(sys.executable).parent / "sipwatch"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    return shutil.which("sipwatch") or "sipwatch"


def install(root: Path, *, sipwatch: str | None = None) -> Path:
    """Install the agent under `root`; returns its path. OSError/ValueError on failure."""
    import contextlib
    import os
    import tempfile

    executable = sipwatch or this_sipwatch()
    if _UNSAFE & set(executable):
        raise ValueError(f"unsafe characters in the sipwatch path {executable!r}")
    text = agent_text()
    if _DEFAULT_LINE not in text:
        raise ValueError("the packaged agent lacks its sipwatch default line")
    text = text.replace(_DEFAULT_LINE, f'OCF_RESKEY_sipwatch_default="{executable}"', 1)
    target_dir = root / AGENT_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / AGENT_NAME
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{AGENT_NAME}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target
