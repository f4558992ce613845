"""The library's structure: no import circle inside ``espnet_peft`` (module-level and function-local
imports alike), and no upward import: ``methods/`` (the leaf layer every planner serves) imports only
itself and the leaf utilities (``errors``, ``names``, ``svd``), the library imports neither its CLIs
(``bin/``) nor the recipe scripts (``local/``), and errors come from ``errors.py``."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

from conftest import ROOT

PKG = ROOT / "espnet_peft"
LEAVES = {"espnet_peft.errors", "espnet_peft.names", "espnet_peft.svd"}


def modules() -> Dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def graph(mods: Dict[str, Path]) -> Dict[str, Set[str]]:
    """Every import of every module (anywhere in it) that names a module of the package."""
    edges: Dict[str, Set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = {f"{target}.{a.name}" for a in node.names} & set(mods)
                # "from . import x" of a submodule imports x (the package is imported already)
                edges[m] |= subs if subs and len(subs) == len(node.names) else ({target} & set(mods)) | subs
            elif isinstance(node, ast.Import):
                edges[m] |= {a.name for a in node.names} & set(mods)
        edges[m].discard(m)
    return edges


def cycles(edges: Dict[str, Set[str]]):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    edges = graph(modules())
    assert cycles(edges) == []
    # (the check finds one when there is one)
    assert cycles({**edges, "espnet_peft.errors": {"espnet_peft.inject"}})


def test_methods_import_nothing_above_them():
    edges = graph(modules())
    up = {m: sorted(t for t in ts if not t.startswith("espnet_peft.methods") and t not in LEAVES)
          for m, ts in edges.items() if m.startswith("espnet_peft.methods")}
    assert {m: t for m, t in up.items() if t} == {}


def test_the_library_imports_no_cli_and_no_recipe_script():
    """``bin/`` holds the command-line entry points only: what a CLI, a recipe script or a benchmark
    shares lives in the library, which imports nothing of ``bin/`` and nothing of ``local/`` (whose
    scripts import the library, and each other by putting ``local/`` on the path)."""
    edges = graph(modules())
    up = {m: sorted(t for t in ts if t.startswith("espnet_peft.bin")) for m, ts in edges.items()
          if not m.startswith("espnet_peft.bin")}
    assert {m: t for m, t in up.items() if t} == {}
    scripts = {f.stem for f in (ROOT / "local").rglob("*.py")} | {"local"}
    bad = []
    for m, f in modules().items():
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [f"{m}: import {n}" for n in names if n.split(".")[0] in scripts]
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.rstrip("/") == "local":
                bad.append(f"{m}: line {node.lineno}: {node.value!r} (local/ put on the path?)")
    assert bad == []


def test_errors_come_from_errors_py():
    bad = []
    for m, f in modules().items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and any(a.name in ("PeftError", "PeftWarning") for a in node.names):
                if not (node.module or "").endswith("errors") and m != "espnet_peft":
                    bad.append(f"{m}: from {'.' * node.level}{node.module} import ...")
    for f in (ROOT / "local").glob("*.py"):
        if "methods.base import PeftError" in f.read_text():
            bad.append(str(f))
    assert bad == []


def test_the_sweep_rooms_import_nothing_above_them():
    """The sweep driver (local/budget_sweep.py) sits on its rooms (local/sweep_*.py): no room imports
    the driver; the phases (local/sweep_phases.py, which the launcher asks for before anything else)
    import the standard library only; and the metrics (espnet_peft/sweep/metrics.py) import nothing
    of the package, so that every layer (protocol, analysis, records, report, driver) may look a metric up."""
    bad = []
    for f in sorted((ROOT / "local").glob("sweep_*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if "budget_sweep" in names:
                bad.append(f"{f.name}: imports the driver")
            if f.name == "sweep_phases.py" and any(n.split(".")[0] not in ("__future__", "typing") for n in names):
                bad.append(f"{f.name}: imports {names}")
    assert bad == []
    assert graph(modules())["espnet_peft.sweep.metrics"] == set()
