"""The import structure of pbdl_cli: no circles, and no import from a lower layer to a
higher one (docs/architecture.md, "Layers"). Read from the source with ``ast``, so
imports inside functions and under ``TYPE_CHECKING`` count as well."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "pbdl_cli"

#: the layers, ground floor first: a module imports only from its own layer or below
LAYERS: list[tuple[str, ...]] = [
    ("errors", "console", "utils", "conf", "__init__"),
    ("registry", "config", "search_path"),
    ("data",),
    ("numerics", "generative"),
    ("problems",),
    ("solvers",),
    ("models",),
    ("training",),
    ("methods",),
    ("evaluation",),
    ("plugins",),
    ("stages",),
    ("reproduce",),
    ("runner", "overrides", "info", "cli", "__main__"),
]
#: kinds that must not know about one another although the layers would allow it
FORBIDDEN = {"models": ("data", "numerics", "problems", "solvers")}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The top-level name of ``pbdl_cli.X...`` (the package itself: ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    name = unit(module)
    for index, names in enumerate(LAYERS):
        if name in names:
            return index
    raise AssertionError(f"{module}: not in any layer of tests/test_layers.py")


def imports(path: Path) -> set[str]:
    """The pbdl_cli modules that the file at ``path`` imports (anywhere in it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pbdl_cli")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module_name(path) if path.name == "__init__.py" else package
                anchor = ".".join(anchor.split(".")[: len(anchor.split(".")) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            if base.startswith("pbdl_cli"):
                for alias in node.names:  # `from pbdl_cli.data import windows`: a module
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if _is_module(candidate) else base)
    return found


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


GRAPH = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_is_in_a_layer():
    for module in GRAPH:
        layer(module)


def test_no_import_runs_up_the_layers():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


@pytest.mark.parametrize("kind", sorted(FORBIDDEN))
def test_kinds_that_must_not_know_each_other(kind: str):
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if unit(module) == kind
        for target in targets
        if unit(target) in FORBIDDEN[kind]
    )
    assert not crossing, "\n".join(crossing)


def test_no_import_circles():
    """Tarjan's strongly connected components over the module graph; a package's
    ``__init__`` importing its own modules is not a circle unless a module imports back."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in GRAPH:
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
                circles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)
