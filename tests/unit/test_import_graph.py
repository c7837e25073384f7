"""kdns's import graph: no cycles at any depth, and each package imports only what it may.

Every ``import`` counts, inside functions too; only imports under ``if TYPE_CHECKING:``
are left out (they never run). The allowed edges between packages are the table below,
and each package's ``__init__`` docstring says the same in words.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "kdns"

# package -> the kdns packages (or top-level modules) it may import. "kdns" is
# kdns/__init__.py (the version); a package may always import its own modules.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "admission": {"errors"},
    "dns": {"errors", "kdns"},
    "corefile": {"errors"},
    "cluster": {"errors", "dns"},
    "envinject": {"errors", "cluster", "admission"},
    "ipam": {"errors", "cluster", "admission"},
    "query": {"errors", "dns", "cluster"},
    "plugins": {"errors", "dns", "cluster", "corefile", "query", "envinject", "ipam"},
    "explain": {"errors", "dns", "cluster", "plugins"},
    "server": {
        "errors",
        "dns",
        "cluster",
        "corefile",
        "query",
        "plugins",
        "envinject",
        "ipam",
        "explain",
        "kdns",
    },
    "cli": {
        "errors",
        "dns",
        "cluster",
        "corefile",
        "query",
        "plugins",
        "envinject",
        "ipam",
        "explain",
        "server",
        "kdns",
    },
    "__main__": {"cli"},
    "kdns": set(),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every kdns module ``module`` imports when it runs, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from walk(child)
            return
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                yield f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
        for child in ast.iter_child_nodes(node):
            yield from walk(child)

    for name in walk(ast.parse(path.read_text(), str(path))):
        if name != "kdns" and not name.startswith("kdns."):
            continue
        while name not in MODULES:
            name = name.rpartition(".")[0]
        if name != module:
            yield name


GRAPH = {module: set(_imports(module, path)) for module, path in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kdns"


def test_the_graph_sees_function_level_imports() -> None:
    assert "kdns.dns.names" in GRAPH["kdns.dns.wire"]
    assert len(GRAPH) > 50


def test_no_import_cycle() -> None:
    """Depth-first search; a back edge is a cycle, reported as its path."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_every_package_is_in_the_table() -> None:
    assert {_package(m) for m in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _package(module) == package
        for target in targets
        if _package(target) != package and _package(target) not in ALLOWED[package]
    )
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "path", sorted(p for p in ROOT.rglob("__init__.py")), ids=lambda p: str(p.parent.name)
)
def test_each_package_says_what_it_is_for_and_must_not_import(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert doc and "TODO" not in doc, f"{path}: no docstring"
    assert "import" in doc.lower(), f"{path}: the docstring does not say what it must not import"
