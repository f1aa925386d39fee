"""Dependencies run one way: which package may not import which.

The layers, bottom up: `sec_train.types`, `sec_train.tokens`, `sec_train.schema`; `sec_train.data`
(the shard format in `data/format.py`, loading, samplers); `sec_train.model`; `sec_train.infer`
and `sec_train.eval`; `sec_train.train`.
`data_tools` (converters, synthesizer) builds on the shard format and never on the model,
inference or training. `sec_train.bench` sits on top of everything, `data_tools` included: it
measures the converters and feeds the trainer synthesized videos, and nothing imports it.
`sec_train.checkpoint_layout` (where checkpoints are and which is current) is neutral: training
writes checkpoints, inference reads them, neither imports the other.

Every rule is checked on the source: every import statement of the package, function-level ones
included, followed transitively (`_static_closure`). For the packages in `RUNTIME_CHECKED` it is
also checked on the modules a fresh interpreter holds after importing every module of the package
alone, which covers imports by name (`importlib`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sec_train", "data_tools")

INFER, EVAL, TRAIN, BENCH = "sec_train.infer", "sec_train.eval", "sec_train.train", "sec_train.bench"
FORBIDDEN = {
    "sec_train.data": ("data_tools", TRAIN, INFER, EVAL, BENCH),
    "sec_train.model": ("sec_train.data", TRAIN, INFER, EVAL, BENCH, "data_tools"),
    INFER: (TRAIN, BENCH, "data_tools"),
    EVAL: (TRAIN, BENCH, "data_tools"),
    TRAIN: (BENCH, "data_tools"),
    "data_tools": ("sec_train.model", TRAIN, INFER, EVAL, BENCH),
    "sec_train.tokens": ("sec_train.data", "sec_train.model", TRAIN),
    "sec_train.checkpoint_layout": ("sec_train.data", "sec_train.model", TRAIN, INFER, EVAL),
}
# a fresh interpreter per package costs seconds (torch, transformers): the innermost layers and
# the edges issue 9 found (data -> data_tools, infer -> train)
RUNTIME_CHECKED = ("sec_train.data", "sec_train.model", INFER)

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def _modules() -> dict[str, Path]:
    """Module name -> source file of every module of our packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports anywhere in it (a `from package import name` counts
    `package.name` when that is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules}


def _static_closure(package: str) -> set[str]:
    modules = _modules()
    todo = [name for name in modules if name == package or name.startswith(package + ".")]
    seen = set(todo)
    while todo:
        for name in _imports(modules[todo.pop()], modules):
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
            for found in {name} | (parents & modules.keys()):
                if found not in seen:
                    seen.add(found)
                    todo.append(found)
    return seen


@pytest.fixture(scope="module")
def runtime_modules() -> dict[str, set[str]]:
    """Per package, the modules a fresh interpreter holds after importing all of it; the
    interpreters run side by side."""
    running = {
        package: subprocess.Popen(
            [sys.executable, "-c", _IMPORT_ALL, package], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for package in RUNTIME_CHECKED
    }
    found = {}
    for package, process in running.items():
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"importing {package} failed"
        found[package] = set(json.loads(out))
    return found


def _violations(package: str, imported: set[str]) -> list[str]:
    return sorted(
        name
        for name in imported
        for banned in FORBIDDEN[package]
        if name == banned or name.startswith(banned + ".")
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_statement_crosses_a_layer(package):
    assert _violations(package, _static_closure(package)) == []


@pytest.mark.parametrize("package", RUNTIME_CHECKED)
def test_importing_a_package_alone_loads_no_forbidden_module(package, runtime_modules):
    assert _violations(package, runtime_modules[package]) == []


def test_the_static_check_sees_function_level_imports():
    """The check would notice a lazy import: today's trainer validates through eval inside a method."""
    assert "sec_train.eval.evaluate" in _static_closure("sec_train.train")
