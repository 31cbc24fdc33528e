"""The shape of the code, read from its syntax trees (nothing is imported or run).

- no function in models/ or pipeline/ longer than 60 lines (STYLE.md 15);
- the wings of pipeline/ (core, llm, corpus, study, mlp, cli) import each other without a cycle,
  and never a private (underscore) name of another wing;
- models/, the NumPy core, imports nothing from pipeline/;
- no stage imports pipeline.cli: the commands call the stages, not the other way round.

Every import counts, at the top of a module or inside a function (a lazy import is still a
dependency).
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
WINGS = ("core", "llm", "corpus", "study", "mlp", "suite", "estimators", "api", "cli")


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (REPO / pkg).rglob("*.py"))


def module_name(path: Path, root: Path | None = None) -> str:
    parts = list(path.relative_to(root or REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Import(NamedTuple):
    target: str  # what is imported, dotted: ``from a.b import c`` -> "a.b.c"
    local: str  # the name it binds: "c", the alias, or "a" for ``import a.b``
    bound_to: str  # what that local name refers to: "a.b.c", or "a" for ``import a.b``
    line: int


def imports(path: Path, root: Path | None = None) -> list[Import]:
    """Every import in the file, at any depth, relative ones resolved against its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                local = a.asname or a.name.split(".")[0]
                found.append(Import(a.name, local, a.name if a.asname else local, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            for a in node.names:
                target = f"{base}.{a.name}"
                found.append(Import(target, a.asname or a.name, target, node.lineno))
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := dotted(node.value)):
        return f"{base}.{node.attr}"
    return None


def private_uses(path: Path, root: Path | None = None) -> list[tuple[str, int]]:
    """(dotted target, line) for each private name the file imports, or reaches as an
    attribute of a name it imported (``config._X`` after ``from pipeline.core import config``)."""
    found = imports(path, root)
    uses = [(i.target, i.line) for i in found if any(map(is_private, i.target.split(".")))]
    bound = {i.local: i.bound_to for i in found}
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr) and (chain := dotted(node)):
            root, _, rest = chain.partition(".")
            if root in bound:
                uses.append((f"{bound[root]}.{rest}", node.lineno))
    return uses


def wing_of(module: str) -> str | None:
    """``pipeline.<wing>...`` -> wing; None for anything else (pipeline/__init__ included)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pipeline" and parts[1] in WINGS else None


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(name, line of the ``def``, lines) of every function and method, nested ones included.
    Lines run from the ``def`` (decorators not counted) to the end of the body, docstring and
    comments included: what a reader has to hold at once."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.name, node.lineno, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


# ------------------------------------------------------------------------------ the checks
def test_the_walkers_see_what_they_should(tmp_path):
    """The helpers find nested functions, lazy and relative imports, and private names reached
    through an alias (else every check below could pass on nothing)."""
    pkg = tmp_path / "pipeline" / "study"
    pkg.mkdir(parents=True)
    f = pkg / "mod.py"
    f.write_text("import os.path\nfrom .tune import _x\nimport pipeline.core.files as pf\n\n"
                 "def f():\n    from ..cli import main\n    return pf._tmp, os.path._y, main\n")
    got = {(i.target, i.local, i.bound_to) for i in imports(f, root=tmp_path)}
    assert got == {("os.path", "os", "os"), ("pipeline.study.tune._x", "_x", "pipeline.study.tune._x"),
                   ("pipeline.core.files", "pf", "pipeline.core.files"),
                   ("pipeline.cli.main", "main", "pipeline.cli.main")}
    uses = {t for t, _ in private_uses(f, root=tmp_path)}
    assert uses == {"pipeline.study.tune._x", "pipeline.core.files._tmp", "os.path._y"}
    body = "".join(f"            x{i} = {i}\n" for i in range(60))  # inner: 61 lines
    g = pkg / "long.py"
    g.write_text(f"class C:\n    @property\n    def m(self):\n        def inner():\n{body}")
    assert {(n, line, k) for n, line, k in function_lengths(g)} == {("m", 3, 62), ("inner", 4, 61)}
    assert len(sources("models")) >= 5 and len(sources("pipeline")) >= 20
    assert {wing_of(module_name(p)) for p in sources("pipeline")} >= set(WINGS)


def test_no_function_longer_than_60_lines():
    long = [f"{where(path, line)} {name}: {n} lines" for path in sources("models", "pipeline")
            for name, line, n in function_lengths(path) if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named " \
                     "helpers):\n" + "\n".join(long)


def wing_graph() -> dict[str, dict[str, str]]:
    """wing -> {wing it imports: where, the first time}."""
    graph: dict[str, dict[str, str]] = {w: {} for w in WINGS}
    for path in sources("pipeline"):
        src = wing_of(module_name(path))
        if src is None:
            continue
        for imp in imports(path):
            dst = wing_of(imp.target)
            if dst and dst != src:
                graph[src].setdefault(dst, where(path, imp.line))
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in graph:
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {}}) is None
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]


def test_the_wings_import_each_other_without_cycles():
    graph = wing_graph()
    assert graph["cli"], "cli imports no other wing: the graph is not being built"
    cycle = find_cycle(graph)
    assert cycle is None, "wing import cycle: " + " -> ".join(
        f"{a} ({graph[a][b]})" for a, b in pairwise(cycle)) + f" -> {cycle[-1]}"


def test_no_wing_imports_a_private_name_of_another():
    bad = []
    for path in sources("pipeline"):
        src = wing_of(module_name(path))
        for target, line in private_uses(path):
            if wing_of(target) not in (None, src):
                bad.append(f"{where(path, line)} uses {target} of wing {wing_of(target)}")
    assert not bad, "private names used across wings (make them public or move them):\n" \
                    + "\n".join(bad)


def test_models_import_nothing_from_pipeline():
    bad = [f"{where(path, i.line)} imports {i.target}" for path in sources("models")
           for i in imports(path) if i.target.split(".")[0] == "pipeline"]
    assert not bad, "models/ (the NumPy core) stands alone:\n" + "\n".join(bad)


def test_no_stage_imports_the_cli():
    bad = []
    for path in sources("pipeline"):
        if wing_of(module_name(path)) == "cli":
            continue
        bad += [f"{where(path, i.line)} imports {i.target}" for i in imports(path)
                if wing_of(i.target) == "cli"]
    assert not bad, "stages must not import pipeline.cli (the commands call the stages):\n" \
                    + "\n".join(bad)
