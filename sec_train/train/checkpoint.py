"""Atomic training checkpoints with a `latest` pointer (layout: `sec_train.checkpoint_layout`).

One checkpoint::

    step-00000200/
        (accelerate save_state) model / DeepSpeed shards, optimizer, scheduler, RNG per process
        trainable.safetensors  \
        adapter/                > the trainable-only checkpoint (`sec_train.model.weights`),
        sec_config.json        /  usable as `model.init=`
        {name}_rank{R}.json    `state_dict()` of each state the trainer passes (train counters,
                               loader position, RNG), one file per process
        config.yaml            the resolved run config
        meta.json              step and process count; written last

A checkpoint is written into `.tmp-step-*`, fsynced, then renamed; `latest` moves after the
rename, so a crash at any point leaves the previous checkpoint as `latest`. The states are JSON,
never pickle: loading a checkpoint cannot run code hidden in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from sec_train.checkpoint_layout import LATEST, META, checkpoint_root, complete_checkpoints
from sec_train.model.weights import save_trainable


class Stateful(Protocol):
    """What a checkpoint stores besides weights and optimizer: a JSON-serialisable state."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def state_file(name: str, rank: int) -> str:
    """The file holding state `name` of process `rank`."""
    return f"{name}_rank{rank}.json"


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
    states: dict[str, Stateful],
    config_yaml: str,
    keep_last: int,
) -> Path:
    """Writes the checkpoint of `step` atomically; called on every process.

    Args:
        accelerator (`Accelerator`): holds the prepared model, optimizer and scheduler.
        model (`SeCModel`): the unwrapped model, for the trainable-only files.
        out_dir (`str` or `Path`): the run directory.
        step (`int`): the optimizer step just completed.
        states (`dict[str, Stateful]`): this process's states by name, e.g. {"train_state":
            trainer, "loader": loader, "rng": RNGState()}; each is written as JSON.
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
    with _gathered_trainable(accelerator, model):
        if accelerator.is_main_process:
            save_trainable(model, tmp)
    # captured last, so the RNG states are the ones the run continues with
    for name, state in states.items():
        (tmp / state_file(name, accelerator.process_index)).write_text(json.dumps(state.state_dict()))
    if accelerator.is_main_process:
        (tmp / "config.yaml").write_text(config_yaml)
        meta = {"step": step, "num_processes": accelerator.num_processes}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
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
    for old in complete_checkpoints(root)[:-keep_last]:
        if old != final:
            shutil.rmtree(old)


def load_checkpoint(
    accelerator: Accelerator, path: str | Path, states: dict[str, Stateful]
) -> dict[str, Any]:
    """Restores model, optimizer, scheduler and `states` from `path` on every process.

    Every state file is read and parsed before anything is restored, so a missing or non-JSON
    one changes nothing. The states are restored after accelerate's: an RNG state among them
    wins over accelerate's copy of the generators.

    Returns:
        The checkpoint's meta ("step", "num_processes").

    Raises:
        FileNotFoundError: `path` is not a complete checkpoint, or lacks a state file.
        ValueError: it was written by another number of processes, or a state file is not JSON.
    """
    path = Path(path)
    if not (path / META).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint ({META} is missing)")
    meta = json.loads((path / META).read_text())
    if meta.get("num_processes") != accelerator.num_processes:
        raise ValueError(
            f"{path} was written by {meta.get('num_processes')} processes, this run has "
            f"{accelerator.num_processes}; use model.init={path} to start from its weights"
        )
    saved = {name: _read_state(path / state_file(name, accelerator.process_index), path) for name in states}
    extra = {"load_module_strict": False} if _uses_deepspeed(accelerator) else {}
    accelerator.load_state(str(path), **extra)
    for name, state in states.items():
        state.load_state_dict(saved[name])
    return meta


def _read_state(file: Path, checkpoint: Path) -> dict[str, Any]:
    """A state file's contents; JSON only, so reading a crafted file cannot run code."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing; use model.init={checkpoint} to start from its weights")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not JSON ({err}); checkpoint states are never unpickled") from err
