"""The product and the test rig live apart: sipwatch never imports testbed, and has no import
circle. (What the wheel holds is tests/functional/test_packaging.py: it needs pip and an index.)

The import graph is read from the source (ast), not by importing: an edge A -> B for every
`import`/`from ... import` in module A that names sipwatch module B, at module level or inside
a function, except under `if TYPE_CHECKING:` (no runtime import). Imports inside functions
count: sipwatch imports lazily to keep `sipwatch probe` fast, and a lazy import is still a
dependency. The old circle (cli lazily imported testbed.demo, which imported cli's exit codes
at module level) was only visible that way.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "sipwatch"
RIG = "testbed"


def _modules(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        out[".".join(parts)] = (path, is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                typing_only.update(id(n) for n in ast.walk(stmt))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in typing_only
    ]


def _targets(node: ast.Import | ast.ImportFrom, here: str, modules: Collection[str]) -> set[str]:
    """The package's modules an import statement in package `here` loads: for `from a import
    b`, the submodule a.b when there is one, else a; names outside the package are dropped."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: `from . import x`, `from ..y import z`
            parts = here.split(".")
            anchor = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names
        ]
    out = set()
    for name in names:
        while name and name not in modules:  # `from a.b import f`: a.b when f is no module
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring)."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            graph[name] |= _targets(node, here, modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        path.append(node)
        for nxt in sorted(graph[node]):
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done and (found := visit(nxt)) is not None:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (found := visit(start)) is not None:
            return found
    return None


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph(ROOT)
    assert "sipwatch.cli" in graph and "sipwatch.exitcodes" in graph["sipwatch.cli"]
    # cli imports its subcommands inside a function (importlib aside, probe's spec is lazy)
    assert "sipwatch.probes.sip_options" in graph["sipwatch.cli"]


def test_find_cycle_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_sipwatch_has_no_import_circle() -> None:
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_sipwatch_never_imports_the_rig() -> None:
    """Not even lazily: the rig is not in the wheel, so such an import fails on a node."""
    offenders = []
    for name, (path, _) in _modules(ROOT, PACKAGE).items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == RIG or n.startswith(f"{RIG}.") for n in names):
                    offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"sipwatch imports {RIG}: {offenders}"


def test_the_rig_is_not_inside_the_package() -> None:
    assert not (ROOT / PACKAGE / RIG).exists()
    assert (ROOT / RIG / "__init__.py").is_file()


_PROBE = f"""
import sys
import sipwatch.cli as cli

def rig():
    return sorted(m for m in sys.modules if m.split(".")[0] == {RIG!r} or ".{RIG}" in m)

seen = {{"import": rig()}}
cli._parser()  # every subcommand configured: imports each command's module
seen["parser"] = rig()
for command in ("probe", "config", *cli._COMMANDS):
    cli._parser(only=command)
seen["parsers"] = rig()
try:
    cli.main(["--version"])
except SystemExit:
    pass
seen["main"] = rig()
print(seen)
"""


def test_importing_the_cli_loads_nothing_of_the_rig() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert seen == {"import": [], "parser": [], "parsers": [], "main": []}


def test_demo_is_not_a_sipwatch_command(capsys: pytest.CaptureFixture[str]) -> None:
    from sipwatch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["demo"])
    assert exc.value.code == 2  # argparse: invalid choice
    assert "invalid choice: 'demo'" in capsys.readouterr().err
