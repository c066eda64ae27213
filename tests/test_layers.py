"""The import graph of ``headpose/``: every import goes to the same layer or a lower one, and the
folders (and top-level modules) import each other without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "headpose"

# Lowest first. A unit is a folder of headpose/ or one of its top-level modules.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("io",),
    ("registry",),
    ("params", "geometry"),
    ("plots",),
    ("datasets", "synth", "models"),
    ("crops",),
    ("inference",),
    ("evaluation",),
    ("training", "deploy", "compare"),
    ("app",),
    ("cli", "__init__"),
)
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """The unit of a dotted ``headpose.x.y`` module name (``headpose`` itself: ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """The headpose modules ``path`` imports (``from headpose.a import b`` counts ``a.b`` when
    ``b`` is a module of that package, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("headpose")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "headpose":
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                folder = REPO_ROOT.joinpath(*candidate.split("."))
                is_module = folder.is_dir() or folder.with_suffix(".py").is_file()
                found.add(candidate if is_module else node.module)
    return found


def unit_graph() -> dict[str, set[str]]:
    """Unit -> the other units it imports, over every module of headpose/."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        source = _unit(".".join(parts))
        targets = {_unit(module) for module in _imports(path)} - {source}
        graph.setdefault(source, set()).update(targets)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path whose ends are the same node, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        path = [*path, node]
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target, path)
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_every_unit_has_a_layer():
    graph = unit_graph()
    units = set(graph) | set().union(*graph.values())
    assert units - set(LAYER_OF) == set(), "add the new folder or module to LAYERS"


def test_no_import_goes_to_a_higher_layer():
    upward = [
        f"{source} (layer {LAYER_OF[source]}) imports {target} (layer {LAYER_OF[target]})"
        for source, targets in unit_graph().items()
        for target in sorted(targets)
        if LAYER_OF[target] > LAYER_OF[source]
    ]
    assert upward == []


def test_the_folders_import_each_other_without_a_cycle():
    assert find_cycle(unit_graph()) is None


@pytest.mark.parametrize(
    ("graph", "has_cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),
    ],
)
def test_the_cycle_check_finds_cycles(graph, has_cycle):
    assert (find_cycle(graph) is not None) == has_cycle
