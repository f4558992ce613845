"""No module outside ``espnet_peft/methods/`` names a method in its code: the library (planner,
injection, merge, state, sweep), its CLIs and the shared recipe tools reach methods through the
registry and its hooks only (``register_with_espnet``, ``gain_reference``, ``references``...).
Prose (docstrings, comments, help text that is a sentence) may name them."""
from __future__ import annotations

import ast

import pytest

from espnet_peft.methods import REGISTRY

from conftest import ROOT

OUTSIDE = sorted(p for p in (ROOT / "espnet_peft").rglob("*.py") if "methods" not in p.relative_to(ROOT).parts) + sorted(
    (ROOT / "local").rglob("*.py"))
# string constants that are a method's name but mean something else there
NOT_A_METHOD = {("svd.py", "full"): "an SVD mode (full / randomized / gram)"}


def method_names_in_code(source: str, filename: str = ""):
    """A method's name used as code: a string constant that is exactly one (docstrings excepted), an
    identifier, or a module of methods/ imported by name."""
    tree = ast.parse(source)
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    hits = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            if n.value.lower() in REGISTRY and (filename, n.value) not in NOT_A_METHOD:
                hits.append(f"line {n.lineno}: {n.value!r}")
        elif isinstance(n, ast.Name) and n.id.lower() in REGISTRY:
            hits.append(f"line {n.lineno}: name {n.id}")
        elif isinstance(n, ast.ImportFrom) and any(part in REGISTRY for part in (n.module or "").split(".")):
            hits.append(f"line {n.lineno}: from {n.module} import ...")
    return hits


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_outside_methods_names_a_method_in_code(path):
    assert method_names_in_code(path.read_text(), path.name) == []


def test_the_guard_finds_a_method_name_in_code():
    assert method_names_in_code('x = 1 if m == "full" else 2\n')
    assert method_names_in_code("from espnet_peft.methods.hff import register_with_espnet\n")
    assert method_names_in_code("lora = 3\n")
    assert not method_names_in_code('"""LoRA and full fine-tuning are compared."""\nx = "a full SVD"\n')
