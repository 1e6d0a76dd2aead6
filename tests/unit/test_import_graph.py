"""octo's modules import each other as a DAG: no cycle, counting every import — at the top
of a module, inside a function (lazy), and under ``if TYPE_CHECKING:``.

A cycle means two modules that cannot be read, tested or loaded one without the other;
the lazy and typing-only ones hide it from the interpreter, not from the reader. The walk
is over the source (ast), so it sees every import whether or not it runs.

Rules of the walk: ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else
to ``a.b``; relative imports are resolved; the implicit import of a parent package (running
``octo/__init__.py`` before ``octo.config``) is not an edge — ``octo/__init__`` imports its
public names lazily, on first use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "octo"


def modules(package: Path) -> dict[str, Path]:
    """Every module of *package* by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of *known* that module *name* imports, anywhere in its source."""
    root = next(iter(known)).split(".")[0]
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(_owner(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            if base.split(".")[0] != root:
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else _owner(base, known))
    found.discard("")
    found.discard(name)
    return found


def _owner(dotted: str, known: dict[str, Path]) -> str:
    """The longest prefix of *dotted* that is one of *known* ("" if none: not ours)."""
    while dotted and dotted not in known:
        dotted = dotted.rpartition(".")[0]
    return dotted


def graph(package: Path) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    for start in sorted(edges):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(edges[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child):], child]
            elif child not in done:
                stack.append((child, iter(sorted(edges.get(child, ())))))
                path.append(child)
                on_path.add(child)
    return None


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other, directly or around (Tarjan's
    algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def test_octo_imports_form_a_dag() -> None:
    edges = graph(PACKAGE)
    groups = strongly_connected(edges)
    cycles = [find_cycle({m: edges[m] & group for m in group}) for group in groups]
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c or []) for c in cycles)


def test_the_cycle_finders_agree_on_a_planted_knot() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert sorted(map(sorted, strongly_connected(edges))) == [["a", "b", "c"], ["e", "e2"]]


# Modules every layer may import: they import no layer above them.
LEAVES = {"octo._version", "octo.errors", "octo.handoff", "octo.logs", "octo.stats",
          "octo.types"}
# Per layer, the layers it must never import (cli -> master -> process -> http/ws; the
# runtime apps import works under any ASGI server: it knows none of the server's layers).
FORBIDDEN = {
    "octo.runtime": ("octo.cli", "octo.master", "octo.process", "octo.http", "octo.ws",
                     "octo.config"),
    "octo.process": ("octo.cli", "octo.master"),
    "octo.http": ("octo.cli", "octo.master", "octo.process", "octo.runtime"),
    "octo.ws": ("octo.cli", "octo.master", "octo.process", "octo.runtime"),
    "octo.master": ("octo.cli",),
}


def test_each_layer_imports_only_below_it() -> None:
    wrong = sorted(f"{module} -> {target}"
                   for module, targets in graph(PACKAGE).items()
                   for layer, banned in FORBIDDEN.items()
                   if module == layer or module.startswith(layer + ".")
                   for target in targets
                   if any(target == b or target.startswith(b + ".") for b in banned))
    assert wrong == []
    runtime_reaches = {target for module, targets in graph(PACKAGE).items()
                       if module.startswith("octo.runtime") for target in targets}
    assert {t for t in runtime_reaches if not t.startswith("octo.runtime")} <= LEAVES


def test_the_walk_sees_lazy_and_typing_only_imports() -> None:
    """Imports the walk must count, or the test above would pass blind."""
    edges = graph(PACKAGE)
    # Inside a function: concurrently(in_workers=True) uses the tasks client.
    assert "octo.runtime.tasks" in edges["octo.runtime.concurrent"]
    # Under TYPE_CHECKING: the task worker's runtime annotation.
    assert "octo.runtime.app" in edges["octo.process.taskworker"]
    # ``from octo import handoff`` is the module, not the package.
    assert "octo.handoff" in edges["octo.runtime.tick"]
    assert "octo" not in edges["octo.runtime.tick"]


@pytest.mark.parametrize("where", ["top", "function", "type_checking"])
def test_a_cycle_is_found_wherever_its_import_is(tmp_path: Path, where: str) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    back = {"top": "from .. import a\n",
            "function": "def f():\n    import pkg.a\n",
            "type_checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from pkg.a import thing\n"}[where]
    (pkg / "sub" / "b.py").write_text(back)
    assert find_cycle(graph(pkg)) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (pkg / "sub" / "b.py").write_text("import os\n")
    assert find_cycle(graph(pkg)) is None
