"""`accelerate launch ... -m sec_train.bench.fault_inject [train args]`: the trainer with one fault
injected, as `SEC_FAULT` (JSON) describes it; the faults bench and tests launch it.

{"kill": PHASE, "rank": R, "step": K, ...} SIGKILLs process R at PHASE of step K:
- "step": after the forward of step K, before its backward;
- "data": when its loader worker has made `examples` examples (the worker kills its parent);
- "save": in checkpoint K's `accelerator.save_state`, at its `calls`-th `torch.save`;
- "trainable", "seal", "publish": before writing trainable.safetensors, before recording the
  files in meta.json, before the rename and the `latest` move of checkpoint K;
- "prune": during the pruning after checkpoint K, once `files` files are deleted;
- "timer": `seconds` after `fit` starts (K is unused).
{"enospc": K} makes checkpoint K's trainable.safetensors fail half-written with ENOSPC.

Nothing here is imported by the framework: the faults are monkeypatches in the launched process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

import sec_train.data.shards as shards
import sec_train.train.checkpoint as checkpoint
from sec_train.train.__main__ import main
from sec_train.train.loop import Trainer


def _die(pid: int | None = None) -> None:
    os.kill(os.getpid() if pid is None else pid, signal.SIGKILL)


def _at_checkpoint(function_name: str, step: int, before: Any) -> None:
    """Calls `before(*args)` ahead of `checkpoint.<function_name>` while checkpoint `step` is written."""
    original = getattr(checkpoint, function_name)

    def wrapped(*args, **kwargs):
        if _saving["step"] == step:
            before(*args)
        return original(*args, **kwargs)

    setattr(checkpoint, function_name, wrapped)


_saving = {"step": None}


def _track_saves() -> None:
    original = checkpoint.save_checkpoint

    def save(accelerator, model, out_dir, step, **kwargs):
        _saving["step"] = step
        try:
            return original(accelerator, model, out_dir, step, **kwargs)
        finally:
            _saving["step"] = None

    checkpoint.save_checkpoint = save
    import sec_train.train.loop as loop

    loop.save_checkpoint = save


def _kill(fault: dict[str, Any]) -> None:
    phase, step = fault["kill"], fault.get("step", 0)
    if phase == "step":
        original = Trainer._reduced_losses

        def reduced(self, losses):
            if self.step == step - 1:
                _die()
            return original(self, losses)

        Trainer._reduced_losses = reduced
    elif phase == "data":
        original_example, made = shards.ShardStream._example, [0]

        def example(self, unit):
            made[0] += 1
            if made[0] == fault["examples"]:
                _die(os.getppid())
            return original_example(self, unit)

        shards.ShardStream._example = example
    elif phase == "save":
        original_save, calls = torch.save, [0]

        def save(*args, **kwargs):
            if _saving["step"] == step:
                calls[0] += 1
                if calls[0] == fault["calls"]:
                    _die()
            return original_save(*args, **kwargs)

        torch.save = save
    elif phase in ("trainable", "seal", "publish"):
        name = {"trainable": "save_trainable", "seal": "file_records", "publish": "_publish"}[phase]
        _at_checkpoint(name, step, lambda *args: _die())
    elif phase == "prune":
        _kill_mid_prune(step, fault["files"])
    elif phase == "timer":
        original_fit = Trainer.fit

        def fit(self):
            timer = threading.Timer(fault["seconds"], _die)
            timer.daemon = True  # a run that ends first is not held open
            timer.start()
            return original_fit(self)

        Trainer.fit = fit
    else:
        raise ValueError(f"SEC_FAULT: unknown kill phase {phase!r}")


def _kill_mid_prune(step: int, files: int) -> None:
    """Deletes `files` files of the first pruned checkpoint one by one, then dies."""
    rmtree = shutil.rmtree

    def partial_rmtree(path, *args, **kwargs):
        if _saving["step"] == step:
            for i, file in enumerate(sorted(p for p in Path(path).rglob("*") if p.is_file())):
                if i == files:
                    _die()
                file.unlink()
            _die()
        return rmtree(path, *args, **kwargs)

    original_prune = checkpoint._prune

    def prune(root, final, keep_last):
        checkpoint.shutil.rmtree = partial_rmtree
        try:
            original_prune(root, final, keep_last)
        finally:
            checkpoint.shutil.rmtree = rmtree

    checkpoint._prune = prune


def _enospc(step: int) -> None:
    def full_disk(model, directory):
        (Path(directory) / "trainable.safetensors").write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(directory) / "trainable.safetensors"))

    _at_checkpoint("save_trainable", step, full_disk)


def install(fault: dict[str, Any], rank: int) -> None:
    """Installs `fault` in this process (rank `rank`) if it targets it."""
    _track_saves()
    if "enospc" in fault:
        _enospc(fault["enospc"])
    elif "kill" in fault and fault["rank"] == rank:
        _kill(fault)


if __name__ == "__main__":
    install(json.loads(os.environ.get("SEC_FAULT", "{}")), int(os.environ.get("RANK", "0")))
    sys.exit(main(sys.argv[1:]))
