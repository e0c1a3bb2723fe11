"""No import circle in core/ or tunnel/: the module graph, read from the sources, is acyclic.

Every import statement counts, wherever it stands: at module level, inside a function (a
"lazy" import that only hides a circle from the interpreter) and under `if TYPE_CHECKING:` (a
circle of types is still two modules that each need the other to be read). Implicit imports
of parent packages do not count (every submodule has one). The graph is built with `ast`, so
no module is imported and the test sees exactly what the files say. Strict: no allow-list.
Break a circle by moving the shared part down a layer, handing a callable in from above, or
naming what a module needs of its caller as a `Protocol` in the module itself (as
app/management/connection.py's `ConnectionOwner`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.netns import REPO_ROOT

PACKAGES = ("core", "tunnel")

def module_files(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of PACKAGES."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> Iterator[tuple[str, ...]]:
    """Per imported name, the dotted names it may be, most specific first (relative ones
    resolved): `from a import b` is module `a.b` if there is one, else a name in `a`."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name,) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield from ((f"{base}.{alias.name}", base) for alias in node.names)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of PACKAGES it imports (`from pkg import name` counts as `pkg`
    unless `pkg.name` is itself a module)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for candidates in _imported_names(module, path):
            targets.update(next(([c] for c in candidates if c in modules), []))
        targets.discard(module)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(circle: list[str], graph: dict[str, set[str]]) -> str:
    members = set(circle)
    edges = [f"{m} -> {', '.join(sorted(graph[m] & members))}" for m in circle]
    return "\n    ".join(edges)


def test_no_import_circle_in_core_or_tunnel() -> None:
    graph = import_graph(module_files())
    found = circles(graph)
    assert not found, "import circles:\n  " + "\n  ".join(_describe(c, graph) for c in found)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    # The detector itself: a circle made of a lazy import, one of TYPE_CHECKING, a relative one.
    pkg = tmp_path / "tunnel"
    (tmp_path / "core").mkdir()
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from tunnel.b import g\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n")
    (pkg / "c.py").write_text("import tunnel.a\n")
    (pkg / "d.py").write_text("from tunnel.a import f\n")
    graph = import_graph(module_files(tmp_path))
    assert graph["tunnel.d"] == {"tunnel.a"}
    assert circles(graph) == [["tunnel.a", "tunnel.b", "tunnel.c"]]
