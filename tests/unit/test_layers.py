"""The package's layers (ARCHITECTURE.md): a module imports only from its own layer and the layers below, the
import graph has no cycle, every module has a layer, and no source file is over 400 lines.

The layers are read from ARCHITECTURE.md's table, so the document and the check cannot disagree. Imports are read
with ``ast`` at every depth (inside functions too: a lazy import is still a dependency), except under
``if TYPE_CHECKING:``. Only static imports count: the registry's built-in modules and entry points, named as
strings, are found at run time, not depended on.
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "scorebench"
MAX_LINES = 400


def read_layers(text: str) -> list[tuple[str, list[str]]]:
    """(layer, module names) from ARCHITECTURE.md's table (``| layer | modules | … |``), bottom layer first."""
    rows, in_table = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_table:
            in_table = len(cells) >= 2 and cells[:2] == ["layer", "modules"]
            continue
        if not line.lstrip().startswith("|"):
            break
        if set(cells[0]) <= set("-: "):
            continue
        rows.append((cells[0], re.findall(r"`([\w.]+)`", cells[1])))
    return rows[::-1]


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """Index of ``module``'s layer (0 = bottom): the longest listed name equal to it or a package above it. The
    package itself (``scorebench``) is listed for its ``__init__`` only, so it is matched exactly."""
    best, best_len = None, -1
    for i, (_, names) in enumerate(layers):
        for n in names:
            hit = module == n or (n != PACKAGE.name and module.startswith(n + "."))
            if hit and len(n) > best_len:
                best, best_len = i, len(n)
    return best


def source_files(root: Path) -> dict[str, Path]:
    """Module name → file for every ``.py`` under ``root`` (following the baselines/ and methods/ symlinks)."""
    out = {}
    for d, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in files:
            if f.endswith(".py"):
                p = Path(d) / f
                parts = list(p.relative_to(root.parent).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                out[".".join(parts)] = p
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return isinstance(t, ast.Name) and t.id == "TYPE_CHECKING" or isinstance(t, ast.Attribute) and \
        t.attr == "TYPE_CHECKING"


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported package module, line) for every import in ``path`` at any depth, outside TYPE_CHECKING blocks.
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    root = PACKAGE.name
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node):
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.append((sub if sub in known else target, node.lineno))
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    out = []
    for name, line in found:
        if name != root and not name.startswith(root + "."):
            continue
        while name not in known and "." in name:  # "import scorebench.x.y" of a name that is not a module
            name = name.rpartition(".")[0]
        out.append((name, line))
    return out


def import_graph(root: Path = PACKAGE) -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    files = source_files(root)
    return files, {m: imports(m, p, set(files)) for m, p in files.items()}


def upward_imports(layers, files, graph) -> list[str]:
    bad = []
    for m, edges in sorted(graph.items()):
        for target, line in edges:
            lo, hi = layer_of(m, layers), layer_of(target, layers)
            if lo is not None and hi is not None and hi > lo:
                bad.append(f"{os.path.relpath(files[m], REPO)}:{line}: {m} ({layers[lo][0]}) imports {target} "
                           f"({layers[hi][0]})")
    return bad


def cycles(graph) -> list[list[str]]:
    """The import graph's strongly connected components with more than one module (Tarjan), each as one cycle."""
    edges = {m: sorted({t for t, _ in e if t in graph and t != m}) for m, e in graph.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(_cycle_in(sorted(comp), edges))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def _cycle_in(comp: list[str], edges) -> list[str]:
    """One cycle through ``comp[0]`` inside the component (breadth-first back to the start), for the message."""
    inside, start = set(comp), comp[0]
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in edges[v]:
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return [start] + path[::-1][1:] + [start]
                if w in inside and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


LAYERS = read_layers((REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"))
FILES, GRAPH = import_graph()


def test_architecture_lists_the_layers():
    names = [n for n, _ in LAYERS]
    assert names[0] == "api" and names[-1] == "cli" and len(set(names)) == len(names), names


def test_every_module_has_a_layer():
    missing = sorted(m for m in FILES if layer_of(m, LAYERS) is None)
    assert not missing, f"modules without a layer (add them to ARCHITECTURE.md's table): {missing}"


def test_no_module_imports_from_a_layer_above():
    bad = upward_imports(LAYERS, FILES, GRAPH)
    assert not bad, "imports from a higher layer (ARCHITECTURE.md):\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_api_imports_nothing_else_of_the_package():
    api = {m: e for m, e in GRAPH.items() if m == "scorebench.api" or m.startswith("scorebench.api.")}
    assert api
    assert all(t.startswith("scorebench.api") for e in api.values() for t, _ in e), api


def test_the_checks_catch_an_upward_import_a_cycle_and_a_hidden_lazy_import(tmp_path):
    """The checker itself, on a throwaway package: an import inside a function counts, one under TYPE_CHECKING
    does not."""
    pkg = tmp_path / "scorebench"
    (pkg / "api").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "api" / "__init__.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                             "    from ..runner import Run\n")
    (pkg / "api" / "types.py").write_text("def f():\n    from .. import runner\n")
    (pkg / "runner.py").write_text("from .api import types\n")
    files, graph = import_graph(pkg)
    layers = read_layers("| layer | modules |\n|---|---|\n| run | `scorebench.runner` |\n| api | `scorebench.api` |\n")
    assert graph["scorebench.api"] == []
    bad = upward_imports(layers, files, graph)
    assert len(bad) == 1 and "scorebench.api.types (api) imports scorebench.runner (run)" in bad[0]
    assert cycles(graph) == [["scorebench.api.types", "scorebench.runner", "scorebench.api.types"]]


def test_no_source_file_is_over_400_lines():
    long = {m: n for m, p in FILES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (one idea per file: split it): {long}"
