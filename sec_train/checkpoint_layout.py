"""Where a run's checkpoints live and which one is current.

Shared by training (`sec_train.train.checkpoint` writes checkpoints, `resume=auto` picks one)
and inference (`--checkpoint RUN_DIR` loads the current one), so neither imports the other::

    OUT/checkpoints/
        step-00000200/     one checkpoint; complete once `meta.json` is in it
        latest             the name of the newest complete checkpoint
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
_STEP_DIR = re.compile(r"step-(\d+)$")


def checkpoint_root(out_dir: str | Path) -> Path:
    """The directory holding the checkpoints of the run in `out_dir`."""
    return Path(out_dir) / CHECKPOINTS


def complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories under `root` holding `meta.json`, oldest first."""
    found = [p for p in root.glob("step-*") if _STEP_DIR.match(p.name) and (p / META).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def find_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint `resume=auto` continues from: the one `latest` names if it is complete,
    else the newest complete one; None when the run has none."""
    root = checkpoint_root(out_dir)
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if (named / META).is_file():
            return named
    complete = complete_checkpoints(root) if root.is_dir() else []
    return complete[-1] if complete else None
