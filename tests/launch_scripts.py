"""Imports a `launch/` script as a module, so tests can call its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

LAUNCH = Path(__file__).resolve().parents[1] / "launch"


def load_launch_script(name: str) -> ModuleType:
    """`launch/{name}.py`, executed as module `name`."""
    spec = importlib.util.spec_from_file_location(name, LAUNCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a dataclass in it resolves its annotations through sys.modules
    spec.loader.exec_module(module)
    return module
