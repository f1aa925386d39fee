"""The tokenizer and the prompt builder share `sec_train.tokens` and import nothing of each other
(the toy tokenizer trains on the stage-2 texts; the prompts use the tokenizer's special tokens)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest


def _sec_train_imports(module: str) -> set[str]:
    """Every `sec_train` module `module` imports, directly or through others, at any depth in
    its files (function-level imports included), read from the source without importing it."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        if name in seen or spec is None or spec.origin is None:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sec_train"):
                todo.append(node.module)
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("sec_train")]
    return seen - {module}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [("sec_train.model.tokenizer", "sec_train.data"), ("sec_train.data.prompts", "sec_train.model")],
)
def test_tokenizer_and_prompts_do_not_import_each_other(module, forbidden):
    imported = _sec_train_imports(module)
    assert "sec_train.tokens" in imported
    assert not [m for m in imported if m == forbidden or m.startswith(forbidden + ".")]


def test_the_import_walk_sees_function_level_imports():
    # sec_train.train.loop imports the evaluator inside a method
    assert "sec_train.eval.evaluate" in _sec_train_imports("sec_train.train.loop")
