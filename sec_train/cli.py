"""`sec-train train|predict|eval|import|plan|export`: one entry point, each command a module's function."""

from __future__ import annotations

import sys

from sec_train.commands import run_command

COMMANDS = {
    "train": ("sec_train.train.__main__", "train a recipe: sec-train train --config FILE [key=value ...]"),
    "predict": ("sec_train.infer.predict", "segment a video from a first-frame mask"),
    "eval": ("sec_train.eval.cli", "J&F of a model or of a predictions folder on a benchmark"),
    "import": ("sec_train.convert.cli:import_main", "import sam2|internvl|sec checkpoints"),
    "plan": ("sec_train.train.plan", "per-GPU memory of a real recipe under ZeRO-2/3, largest batch"),
    "export": ("sec_train.convert.cli:export_main", "export sec: back to the SeC-4B layout"),
}


def main(argv: list[str] | None = None) -> int:
    return run_command("sec-train", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
