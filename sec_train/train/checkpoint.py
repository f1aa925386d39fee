"""Atomic training checkpoints with a `latest` pointer, and finding one to resume from.

Layout under `OUT/checkpoints/`::

    step-00000200/             one complete checkpoint
        (accelerate save_state) model / DeepSpeed shards, optimizer, scheduler, RNG per process
        trainable.safetensors  \
        adapter/                > the trainable-only checkpoint (`sec_train.model.weights`),
        sec_config.json        /  usable as `model.init=`
        loader_rank{R}.pt      the data loader position of each process
        config.yaml            the resolved run config
        meta.json              step and counters; written last
    latest                     the name of the newest complete checkpoint

A checkpoint is written into `.tmp-step-*`, fsynced, then renamed; `latest` moves after the
rename, so a crash at any point leaves the previous checkpoint as `latest`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from sec_train.model.weights import save_trainable

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
_STEP_DIR = re.compile(r"step-(\d+)$")


def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINTS


def _uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def _gathered_trainable(
    accelerator: Accelerator, model: torch.nn.Module
) -> contextlib.AbstractContextManager:
    """Under ZeRO-3 each process holds a shard of every parameter: gather the trainable ones."""
    if _uses_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        params = [p for p in model.parameters() if p.requires_grad]
        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


def save_checkpoint(
    accelerator: Accelerator,
    model: torch.nn.Module,
    out_dir: str | Path,
    step: int,
    *,
    meta: dict[str, Any],
    loader_state: dict[str, Any],
    config_yaml: str,
    keep_last: int,
) -> Path:
    """Writes the checkpoint of `step` atomically; called on every process.

    Args:
        accelerator (`Accelerator`): holds the prepared model, optimizer and scheduler.
        model (`SeCModel`): the unwrapped model, for the trainable-only files.
        out_dir (`str` or `Path`): the run directory.
        step (`int`): the optimizer step just completed.
        meta (`dict`): counters to restore (JSON-serialisable); "step" is added.
        loader_state (`dict`): this process's `Loader.state_dict()`.
        config_yaml (`str`): the resolved config.
        keep_last (`int`): complete checkpoints to keep; older ones are deleted.

    Returns:
        The final checkpoint directory.
    """
    root = checkpoint_root(out_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # frozen weights come from the base model on resume; only trained ones are worth writing
    extra = {"exclude_frozen_parameters": True} if _uses_deepspeed(accelerator) else {}
    accelerator.save_state(str(tmp), **extra)
    torch.save(loader_state, tmp / f"loader_rank{accelerator.process_index}.pt")
    with _gathered_trainable(accelerator, model):
        if accelerator.is_main_process:
            save_trainable(model, tmp)
    if accelerator.is_main_process:
        (tmp / "config.yaml").write_text(config_yaml)
        (tmp / META).write_text(json.dumps({**meta, "step": step}, indent=2) + "\n")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _publish(tmp, final, keep_last)
    accelerator.wait_for_everyone()
    return final


def _fsync_tree(directory: Path) -> None:
    """Flushes every file under `directory`, then the directories themselves."""
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
    for path in [*sorted(p for p in directory.rglob("*") if p.is_dir()), directory]:
        _fsync_dir(path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path, keep_last: int) -> None:
    """fsync, rename into place, move `latest`, prune; the order is what makes it crash-safe."""
    _fsync_tree(tmp)
    root = final.parent
    if final.exists():  # a step re-run after resuming from an older checkpoint
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(final.name + "\n")
    with pointer.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(pointer, root / LATEST)
    _fsync_dir(root)
    # after resuming from an older checkpoint, newer ones of the abandoned run sort after `final`
    for old in _complete_checkpoints(root)[:-keep_last]:
        if old != final:
            shutil.rmtree(old)


def _complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories holding `meta.json`, oldest first."""
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
    complete = _complete_checkpoints(root) if root.is_dir() else []
    return complete[-1] if complete else None


def load_checkpoint(accelerator: Accelerator, path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restores model, optimizer, scheduler and RNG states from `path` on every process.

    Returns:
        The checkpoint's meta (with "step") and this process's loader state.

    Raises:
        FileNotFoundError: `path` is not a complete checkpoint, or was written by fewer processes.
    """
    path = Path(path)
    if not (path / META).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint ({META} is missing)")
    loader_file = path / f"loader_rank{accelerator.process_index}.pt"
    if not loader_file.is_file():
        raise FileNotFoundError(
            f"{loader_file} is missing: the checkpoint was written by a different number of processes "
            f"(this run has {accelerator.num_processes}); use model.init={path} to start from its weights"
        )
    extra = {"load_module_strict": False} if _uses_deepspeed(accelerator) else {}
    accelerator.load_state(str(path), **extra)
    meta = json.loads((path / META).read_text())
    return meta, torch.load(loader_file, weights_only=False)
