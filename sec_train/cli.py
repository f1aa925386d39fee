"""`sec-train train|predict|eval|import|export`: one entry point, each command a module's `main`."""

from __future__ import annotations

import importlib
import sys

_COMMANDS = {
    "train": ("sec_train.train.__main__", "train a recipe: sec-train train --config FILE [key=value ...]"),
    "predict": ("sec_train.infer.predict", "segment a video from a first-frame mask"),
    "eval": ("sec_train.eval.evaluate", "J&F on DAVIS-style folders or shards"),
    "import": ("sec_train.convert.cli", "import sam2|internvl|sec checkpoints"),
    "export": ("sec_train.convert.cli", "export sec: back to the SeC-4B layout"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _COMMANDS:
        print("usage: sec-train COMMAND [args]\n", file=sys.stderr)
        for name, (_, help_text) in _COMMANDS.items():
            print(f"  {name:<8} {help_text}", file=sys.stderr)
        return 2
    module = importlib.import_module(_COMMANDS[argv[0]][0])
    # import/export share a module that needs to know which of the two it runs
    return module.main(argv if argv[0] in ("import", "export") else argv[1:])


if __name__ == "__main__":
    sys.exit(main())
