"""The project's modules import each other without a cycle (train.py -> block -> export -> kws -> dendritic,
and sweep -> block): a cycle makes import order matter and let `train.py` become a library once already.

Every import counts: the lazy ones inside functions (they form cycles at run time just the same) and the
module-level ones under `if TYPE_CHECKING:` too (a cycle for every type checker, and one `get_type_hints`
or moved annotation away from a run-time one). The PB library (dendritic/) imports nothing else of the
project, so it can be used, and installed, on its own. Importing `a.b` does not count as importing package `a`'s
`__init__` (Python runs it first, but it cannot close a cycle unless `a` imports `a.b` back *by name*).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("block", "dendritic", "kws", "export", "features", "sweep", "bench")
TOP_MODULES = ("train",)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(root: Path, path: Path, known: set[str]) -> set[str]:
    """Project modules that the file at `path` imports (resolved to the longest known module name)."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in map(resolve, targets) if t and t != name)
    return found


def import_graph(root: Path, packages=PACKAGES, top=TOP_MODULES) -> dict[str, set[str]]:
    files = [p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))]
    files += [root / f"{m}.py" for m in top if (root / f"{m}.py").is_file()]
    known = {module_name(root, p) for p in files}
    return {module_name(root, p): imports_of(root, p, known) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative DFS with colours)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_the_project_has_no_import_cycle() -> None:
    graph = import_graph(ROOT)
    assert "block.pipeline" in graph and "export.checkpoint" in graph["block.pipeline"]  # the graph is real
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_pb_library_stands_alone() -> None:
    graph = import_graph(ROOT)
    outside = sorted({(m, d) for m, deps in graph.items() if m.split(".")[0] == "dendritic"
                      for d in deps if d.split(".")[0] != "dendritic"})
    assert outside == [], outside


def test_only_tests_import_train() -> None:
    importers = sorted(m for m, deps in import_graph(ROOT).items() if "train" in deps)
    assert importers == [], importers


@pytest.mark.parametrize("files, cycle", [
    ({"pkg/__init__.py": "", "pkg/a.py": "from . import b\n", "pkg/b.py": "def f():\n    from pkg import a\n"},
     ["pkg.a", "pkg.b", "pkg.a"]),
    ({"pkg/__init__.py": "from .a import x\n", "pkg/a.py": "import pkg\nx = 1\n"}, ["pkg", "pkg.a", "pkg"]),
    ({"pkg/__init__.py": "", "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n",
      "pkg/b.py": "import pkg.a\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    ({"pkg/__init__.py": "", "pkg/a.py": "", "train.py": "import pkg.a\n"}, None),
])
def test_the_check_finds_a_deliberate_cycle(tmp_path: Path, files: dict[str, str], cycle: list[str] | None) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = find_cycle(import_graph(tmp_path, ("pkg",)))
    if cycle is None:
        assert found is None
    else:
        assert found is not None and set(found) == set(cycle) and found[0] == found[-1]
