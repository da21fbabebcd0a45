"""The package's shape: layers import only downward, no cycles, small files.

Reads every module's imports with ``ast`` (function-level imports included), so a
cycle hidden in a function body fails here too. The layers are documented in
``docs/architecture.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fedcomp"

#: Rank of each layer; a module may import only modules of a strictly lower rank, or of
#: its own layer.
LAYERS = {
    "core": 0,
    "compressors": 1,
    "tasks": 1,
    "optimizers": 1,
    "flower": 2,
    "config": 1,
    "engines": 4,
    "analysis": 4,
    "tracking": 4,
    "commands": 5,
}
COMMANDS = {"run", "report", "formula", "pretrain", "deploy"}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "commands"  # fedcomp/__init__.py
    top = parts[1]
    if top in COMMANDS and len(parts) == 2:
        return "commands"
    if top == "config":
        return "config"
    return top


def imports_of(path: Path) -> set[str]:
    """fedcomp modules imported anywhere in ``path`` (top level and function bodies)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("fedcomp") and name in modules:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_every_folder_is_a_known_layer():
    for path in PACKAGE.rglob("*.py"):
        layer = layer_of(module_name(path))
        assert layer in LAYERS, f"{path}: folder {layer!r} is not a layer in {sorted(LAYERS)}"


def test_imports_point_down():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            if target == "fedcomp" or layer_of(target) == layer_of(module):
                continue  # within a layer (cycles are caught below)
            if target.startswith(module + ".") or module.startswith(target + "."):
                continue  # a package and its own modules
            if LAYERS[layer_of(target)] >= LAYERS[layer_of(module)]:
                wrong.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert not wrong, "imports that do not point down:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodule is not a cycle
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_no_file_over_the_limit():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_commands_are_thin():
    thick = {
        name: n
        for name in COMMANDS
        if (n := len((PACKAGE / f"{name}.py").read_text(encoding="utf-8").splitlines())) > 150
    }
    assert not thick, f"commands over 150 lines: {thick}"


def test_core_needs_neither_flower_nor_torch():
    for path in (PACKAGE / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"flwr", "torch", "ray"}, f"{path} imports {name}"
