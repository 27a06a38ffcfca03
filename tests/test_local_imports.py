"""No import cycles inside ``agent.local``, read from the source.

Every import counts: at module level, inside functions (lazy imports) and under
``TYPE_CHECKING``, since a cycle that only the type checker or a late call walks is still two
modules that cannot be understood, or split, one without the other. A module also depends on
its package, whose ``__init__`` runs first, so an ``__init__`` that imports its own modules
closes a cycle with each of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "agent.local"
SOURCE = Path(__file__).resolve().parent.parent / "agent" / "local"


def module_name(path: Path) -> str:
    """``agent/local/live/speaker.py`` -> ``agent.local.live.speaker`` (a package's
    ``__init__.py`` is the package)."""
    parts = path.relative_to(SOURCE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def module_files() -> dict[str, Path]:
    """Every module of ``agent.local``, its subpackages' included."""
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def imported(tree: ast.Module, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``tree`` imports anywhere."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from agent.local import x`` imports the package, and module x if there is one.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = imported(ast.parse(path.read_text(encoding="utf-8")), set(files))
        if name != PACKAGE:
            # Importing a module (or a subpackage) runs its parent package's __init__ first.
            deps.add(_parent(name))
        deps.discard(name)
        graph[name] = deps
    return graph


def _parent(module: str) -> str:
    return module.rsplit(".", 1)[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that is on one, as the path that closes it."""
    found: list[list[str]] = []
    on_cycle: set[str] = set()
    for start in sorted(graph):
        if start in on_cycle:
            continue
        # Depth-first search for a path from ``start`` back to itself.
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for dep in sorted(graph[node]):
                if dep == start:
                    found.append([*path, start])
                    on_cycle.update(path)
                    stack.clear()
                    break
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    return found


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    assert "agent.local.server" in graph and "agent.local.protocol" in graph["agent.local.server"]
    # Lazy and TYPE_CHECKING imports count too.
    assert "agent.local.voice" in graph["agent.local.backend"]
    assert "agent.local.stt" in graph["agent.local.models"]
    # Subpackages are walked, and each module depends on its own package.
    assert "agent.local.live.protocol" in graph["agent.local.server"]
    assert "agent.local.live" in graph["agent.local.live.speaker"]
    assert "agent.local" in graph["agent.local.live"]


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_agent_local_has_no_import_cycles() -> None:
    assert cycles(import_graph()) == []
