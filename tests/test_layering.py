"""The rooms of ``tribrid/`` import downward only, as docs/architecture.md draws them.

Every import counts: module level, inside functions and under ``TYPE_CHECKING``. A room
is a top-level module or package of ``tribrid``; it may import rooms of lower layers
only. Within the package no two modules may import each other, directly or around a
loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tribrid"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

#: Bottom to top. A room may import the rooms of the layers below its own.
LAYERS: list[set[str]] = [
    {"errors"},
    {"logs", "metrics"},
    {"encoders", "connectors"},
    {"store", "ledger"},
    {"settings"},
    {"ingestion"},
    {"factory"},
    {"retrievers", "background"},
    {"evaluation", "watch"},
    {"server"},
    {"app"},
    {"cli"},
]
#: ``tribrid/__init__.py`` re-exports the façade lazily: it sits above every room.
ROOT = "tribrid"


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {
        _module_name(p, package): p for p in package.rglob("*.py") if "migrations" not in p.parts
    }


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every ``tribrid`` module ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                # ``from tribrid import factory`` imports the module tribrid.factory.
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in known else module)
    return found


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(package)
    known = set(modules)
    return {name: _imports(name, path, known) & known for name, path in modules.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _layer(room: str) -> int:
    if room == ROOT:
        return len(LAYERS)
    for index, rooms in enumerate(LAYERS):
        if room in rooms:
            return index
    raise AssertionError(
        f"room {room!r} is in no layer; add it to LAYERS here and to docs/architecture.md"
    )


def test_every_room_has_a_layer() -> None:
    rooms = {_room(m) for m in _modules()}
    for room in rooms:
        _layer(room)
    assert {r for layer in LAYERS for r in layer} <= rooms | {ROOT}


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} imports {target} ({_room(module)} is layer {_layer(_room(module))}, "
        f"{_room(target)} is layer {_layer(_room(target))})"
        for module, targets in graph.items()
        for target in targets
        if _room(target) != _room(module) and _layer(_room(target)) >= _layer(_room(module))
    )


def test_rooms_import_downward_only() -> None:
    upward = _upward(_graph())
    assert not upward, "imports that go sideways or up:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target == node:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_nothing_below_imports_the_facade_or_the_cli() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if _room(module) not in ("app", "cli", ROOT)
        for target in targets
        if _room(target) in ("app", "cli")
    )
    assert not offenders, offenders


def test_the_architecture_document_draws_these_layers() -> None:
    """docs/architecture.md lists the same layers, top to bottom, as ``LAYERS``."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = re.search(r"<!-- layers -->\n(.*?)<!-- /layers -->", text, re.S)
    assert block, "docs/architecture.md lost its <!-- layers --> block"
    drawn = [
        {room.strip("` ") for room in line.split("|")[1].split(",")}
        for line in block.group(1).splitlines()
        if line.startswith("|") and not line.startswith("| layer") and "---" not in line
    ]
    assert drawn[::-1] == LAYERS


def test_the_check_catches_hidden_upward_imports(tmp_path: Path) -> None:
    """An import of the façade hidden in a function, and one under TYPE_CHECKING, are
    both found (so the tests above can fail)."""
    package = tmp_path / "tribrid"
    (package / "ingestion").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("")
    (package / "factory.py").write_text("")
    (package / "ingestion" / "__init__.py").write_text("")
    (package / "ingestion" / "plan.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from tribrid import factory\n"
        "def f():\n    from tribrid.app import search\n"
    )
    found = _upward(_graph(package))
    assert [line.split(" (")[0] for line in found] == [
        "tribrid.ingestion.plan imports tribrid.app",
        "tribrid.ingestion.plan imports tribrid.factory",
    ]
