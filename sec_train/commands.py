"""`PROG COMMAND [args]`: runs the function a command names, lazily imported, with the rest of argv.

One dispatcher for `sec-train`, `sec-data` and `python -m sec_train.bench`. A command's target is
"module" (its `main`) or "module:function", as console entry points name them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def _target(spec: str) -> Callable[[list[str]], int]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function or "main")


def run_command(prog: str, commands: dict[str, tuple[str, str]], argv: list[str] | None = None) -> int:
    """Runs `commands[argv[0]]` (target, help) on `argv[1:]`; prints the commands and returns 2
    when argv names none of them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands:
        print(f"usage: {prog} COMMAND [args]\n", file=sys.stderr)
        for name, (_, help_text) in commands.items():
            print(f"  {name:<8} {help_text}", file=sys.stderr)
        return 2
    return _target(commands[argv[0]][0])(argv[1:])
