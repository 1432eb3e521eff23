"""The folders are the layers, and the imports respect them.

Every module under ``src/dicomnet`` is parsed (not imported) and each of its
imports of a dicomnet module, wherever it stands (top level, inside a
function, under ``TYPE_CHECKING``), is an arrow. The rules
(docs/architecture.md):

- an arrow may point only to the module's own layer or to a layer it is
  allowed to import (the table below), never up;
- no circle of arrows, however long;
- no module over 800 lines;
- each layer's ``__init__`` says, in its docstring, what it may import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "dicomnet"

MAX_LINES = 800

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "core": {"errors"},
    "dataset": {"errors", "core"},
    "net": {"errors", "core", "dataset"},
    "services": {"errors", "core", "dataset", "net"},
    "archive": {"errors", "core", "dataset", "net", "services"},
    "testing": {"errors", "core", "dataset", "net"},
}
"""Layer -> the layers below it that it may import. ``cli`` and the public
faces (``dicomnet/__init__``, ``sync``, ``__main__``) may import anything."""

TOP = {"cli", "__init__", "sync", "__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported(module: str, path: Path) -> Iterator[str]:
    """The dicomnet modules ``module`` imports: for ``from X import Y``, ``X.Y``
    when that is a module, else ``X``."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dicomnet"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = module.split(".")[: -node.level or None]
                base = ".".join([*package, node.module])
            if not base.startswith("dicomnet"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in MODULES else base


ARROWS = {module: sorted(set(imported(module, path))) for module, path in MODULES.items()}


def test_every_layer_is_a_folder_with_its_rules_in_its_docstring() -> None:
    for name in ("core", "dataset", "net", "services", "archive", "cli", "testing"):
        init = PACKAGE / name / "__init__.py"
        assert init.exists(), f"dicomnet.{name} is not a package"
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in docstring or "may import" in docstring, (
            f"dicomnet/{name}/__init__.py does not say what the layer may import"
        )
    loose = [
        module
        for module in MODULES
        if module.count(".") == 1 and layer(module) not in {*ALLOWED, *TOP}
    ]
    assert not loose, f"modules outside every layer: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_climbs_a_layer(module: str) -> None:
    own = layer(module)
    if own in TOP:
        return
    allowed = ALLOWED[own] | {own}
    climbs = [
        target
        for target in ARROWS[module]
        if target != "dicomnet" and layer(target) not in allowed
    ]
    assert not climbs, f"{module} ({own}) imports {climbs}; {own} may import {sorted(allowed)}"


def test_no_import_circle() -> None:
    graph = {
        module: [target for target in targets if target in MODULES and target != "dicomnet"]
        for module, targets in ARROWS.items()
    }
    visiting: list[str] = []
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        visiting.append(node)
        for target in graph[node]:
            if state.get(target) == 1:
                circles.append([*visiting[visiting.index(target) :], target])
            elif target not in state:
                visit(target)
        visiting.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_passes_800_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES})"
