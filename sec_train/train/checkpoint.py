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
        meta.json              step, process count, launcher ("deepspeed" / "plain"), ZeRO
                               stage, global batch, and every other file's size and CRC-32
                               (`sec_train.checkpoint_layout`); written last
        universal/             (made on first need) DeepSpeed's world-size-free universal
                               checkpoint of the ZeRO shards, for resuming on another world size

A checkpoint is written into `.tmp-step-*`, fsynced, then renamed; `latest` moves after the
rename, so a crash at any point leaves the previous checkpoint as `latest`. A write that fails
(a full disk) on any process fails on every process, so none waits forever for the others.
Pruning renames a checkpoint to `.tmp-*` before deleting it, so one half-deleted by a crash is
never taken for a checkpoint. The states are JSON, never pickle: loading a checkpoint cannot
run code hidden in it.

Resuming on another number of processes: the states are re-split
(`Resplittable.load_resharded_state_dicts` gets every old rank's state). A plain accelerate
checkpoint's model and optimizer files are whole, so they load as they are; DeepSpeed's ZeRO
shards are converted once into DeepSpeed's universal format (`deepspeed.checkpoint.ds_to_universal`,
kept in `universal/`, which the checksums do not cover) and loaded from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list

from sec_train.checkpoint_layout import (
    CHECKPOINTS,
    LATEST,
    META,
    CheckpointError,
    DamagedCheckpointError,
    checkpoint_dirs,
    checkpoint_root,
    file_records,
    find_checkpoint,
    read_meta,
    refuse_overwrite,
    sealed_meta,
    verify_checkpoint,
)
from sec_train.model.weights import save_trainable
from sec_train.train.run_log import METRICS_FILE
from sec_train.train.universal import load_universal

logger = logging.getLogger(__name__)


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (e.g. the disk is full); the previous one stays `latest`."""


class Stateful(Protocol):
    """What a checkpoint stores besides weights and optimizer: a JSON-serialisable state."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Resplittable(Stateful, Protocol):
    """A state that can continue on another world size from every old rank's state."""

    def load_resharded_state_dicts(self, states: list[dict[str, Any]]) -> None: ...


def state_file(name: str, rank: int) -> str:
    """The file holding state `name` of process `rank`."""
    return f"{name}_rank{rank}.json"


def _uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def _zero_stage(accelerator: Accelerator) -> int | None:
    return accelerator.state.deepspeed_plugin.zero_stage if _uses_deepspeed(accelerator) else None


def _gathered_trainable(
    accelerator: Accelerator, model: torch.nn.Module
) -> contextlib.AbstractContextManager:
    """Under ZeRO-3 each process holds a shard of every parameter: gather the trainable ones."""
    if _zero_stage(accelerator) == 3:
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
    global_batch: int,
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
        keep_last (`int`): intact checkpoints to keep, this one included; older and damaged
            ones are deleted.
        global_batch (`int`): samples per optimizer step over all processes (kept when a run
            resumes on another world size).

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
    _on_every_process(accelerator, final, lambda: _write(accelerator, model, tmp, states, config_yaml))
    _on_every_process(
        accelerator, final, lambda: _seal(accelerator, tmp, final, step, keep_last, global_batch)
    )
    return final


def _write(
    accelerator: Accelerator, model: torch.nn.Module, tmp: Path, states: dict[str, Stateful], config_yaml: str
) -> None:
    """This process's part of the checkpoint: its shards, states and (main) the trainable files."""
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


def _seal(
    accelerator: Accelerator, tmp: Path, final: Path, step: int, keep_last: int, global_batch: int
) -> None:
    """On the main process: records every file that every process wrote in `meta.json`, then
    publishes."""
    if accelerator.is_main_process:
        meta = {"step": step, "num_processes": accelerator.num_processes, "global_batch": global_batch}
        meta |= {"launcher": "deepspeed" if _uses_deepspeed(accelerator) else "plain"}
        meta |= {"zero_stage": _zero_stage(accelerator), "files": file_records(tmp)}
        (tmp / META).write_text(sealed_meta(meta))
        _publish(tmp, final, keep_last)


def _on_every_process(accelerator: Accelerator, final: Path, work: Callable[[], Any]) -> None:
    """Runs `work`, then agrees with every process on whether it raised an OSError anywhere;
    if so, every process raises `CheckpointWriteError` and the unpublished files are removed."""
    error = None
    try:
        work()
    except OSError as err:
        error = err
    flag = torch.tensor([float(error is not None)], device=accelerator.device)
    if accelerator.reduce(flag, "sum").item() == 0:
        return
    root = final.parent
    if accelerator.is_main_process:
        shutil.rmtree(root / f".tmp-{final.name}", ignore_errors=True)
    pointer = root / LATEST
    latest = pointer.read_text().strip() if pointer.is_file() else None
    kept = f"`latest` still names {latest}" if latest else "no checkpoint was published before"
    cause = f"on process {accelerator.process_index}: {error}" if error else "on another process"
    raise CheckpointWriteError(
        f"writing checkpoint {final} failed {cause}; {kept}. Free space (or fix the error) and rerun "
        "with resume=auto"
    ) from error


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
    _prune(root, final, keep_last)


def _prune(root: Path, final: Path, keep_last: int) -> None:
    """Keeps `final` and the `keep_last - 1` newest other intact checkpoints (sizes checked); a
    damaged one never counts as kept, so the last intact checkpoint is never deleted for it.
    After resuming from an older checkpoint, newer ones of the abandoned run count too."""
    others = [p for p in reversed(checkpoint_dirs(root)) if p != final]
    kept = [p for p in others if _intact(p)][: keep_last - 1]
    for old in others:
        if old not in kept:
            doomed = root / f".tmp-pruned-{old.name}"  # a crash mid-delete leaves no step-* behind
            os.rename(old, doomed)
            shutil.rmtree(doomed)


def _intact(checkpoint: Path) -> bool:
    try:
        verify_checkpoint(checkpoint, checksums=False)
    except DamagedCheckpointError:
        return False
    return True


def start_checkpoint(
    accelerator: Accelerator, out_dir: str | Path, *, resume: str | None, overwrite: bool, checksums: bool
) -> Path | None:
    """The checkpoint a run starts from, chosen on the main process and told to every process.

    `resume="auto"`: the newest intact checkpoint (`find_checkpoint`), None if there is none.
    `resume=PATH`: PATH, once verified. No `resume`: None, a fresh start, refused when `out_dir`
    holds checkpoints unless `overwrite`, which moves them (and the metrics) aside first.

    Raises:
        CheckpointError: on every process, with the message of the main process.
    """
    outcome: list[tuple[str, str | None]] = [("", None)]
    if accelerator.is_main_process:
        try:
            chosen = _choose(out_dir, resume, overwrite, checksums)
            outcome = [("ok", None if chosen is None else str(chosen))]
        except CheckpointError as err:
            outcome = [("error", str(err))]
    kind, value = broadcast_object_list(outcome)[0]
    if kind == "error":
        raise CheckpointError(value)
    return None if value is None else Path(value)


def _choose(out_dir: str | Path, resume: str | None, overwrite: bool, checksums: bool) -> Path | None:
    if resume == "auto":
        return find_checkpoint(out_dir, checksums)
    if resume is not None:
        if not Path(resume).is_dir():
            raise CheckpointError(f"resume={resume}: no such checkpoint directory")
        try:
            verify_checkpoint(Path(resume), checksums)
        except DamagedCheckpointError as err:
            raise CheckpointError(
                f"resume={resume} is damaged: {err}; resume=auto falls back to the newest intact checkpoint"
            ) from err
        return Path(resume)
    refuse_overwrite(out_dir, resume, overwrite)
    if overwrite and checkpoint_root(out_dir).is_dir():
        aside = Path(out_dir) / f"replaced-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        aside.mkdir()
        for name in (CHECKPOINTS, METRICS_FILE):
            if (Path(out_dir) / name).exists():
                os.rename(Path(out_dir) / name, aside / name)
        logger.warning("overwrite=true: moved the previous run's checkpoints and metrics to %s", aside)
    return None


def load_checkpoint(
    accelerator: Accelerator, path: str | Path, states: dict[str, Stateful]
) -> dict[str, Any]:
    """Restores model, optimizer, scheduler and `states` from `path` on every process.

    Every state file is read and parsed before anything is restored, so a missing or non-JSON
    one changes nothing. The states are restored after accelerate's: an RNG state among them
    wins over accelerate's copy of the generators. A checkpoint of another world size restores
    each state from all the old ranks' files (`Resplittable`); under DeepSpeed its ZeRO shards
    go through the universal format (converted once, see the module docstring).

    Returns:
        The checkpoint's meta ("step", "num_processes", "launcher", "zero_stage", ...).

    Raises:
        DamagedCheckpointError: its `meta.json` is missing or changed.
        FileNotFoundError: it lacks a state file.
        ValueError: it needs the other launcher (DeepSpeed or plain accelerate), a state
            cannot move to another world size, or a state file is not JSON.
    """
    path = Path(path)
    meta = read_meta(path)
    _check_launcher(accelerator, path, meta)
    resized = int(meta["num_processes"]) != accelerator.num_processes
    saved = _read_states(accelerator, path, int(meta["num_processes"]), states)
    if resized and _uses_deepspeed(accelerator):
        load_universal(accelerator, path)
    else:
        extra = {"load_module_strict": False} if _uses_deepspeed(accelerator) else {}
        accelerator.load_state(str(path), **extra)
    for name, state in states.items():
        (state.load_resharded_state_dicts if resized else state.load_state_dict)(saved[name])
    return meta


def _read_states(
    accelerator: Accelerator, path: Path, old_world: int, states: dict[str, Stateful]
) -> dict[str, Any]:
    """Each state's saved dict for this process; from another world size, every old rank's."""
    if old_world == accelerator.num_processes:
        rank = accelerator.process_index
        return {name: _read_state(path / state_file(name, rank), path) for name in states}
    fixed = [name for name, state in states.items() if not hasattr(state, "load_resharded_state_dicts")]
    if fixed:  # not `Resplittable`
        raise ValueError(
            f"states {fixed} cannot move from {old_world} processes to {accelerator.num_processes}"
        )
    return {
        name: [_read_state(path / state_file(name, r), path) for r in range(old_world)] for name in states
    }


def _check_launcher(accelerator: Accelerator, path: Path, meta: dict[str, Any]) -> None:
    """A DeepSpeed checkpoint needs DeepSpeed and a plain one plain accelerate; says which."""
    launcher = meta.get("launcher", "deepspeed" if (path / "pytorch_model").is_dir() else "plain")
    ours = "deepspeed" if _uses_deepspeed(accelerator) else "plain"
    if launcher == ours:
        return
    if launcher == "deepspeed":
        stage = meta.get("zero_stage") or 2
        need = f"DeepSpeed: add deepspeed=configs/deepspeed/zero{stage}.json (any number of processes)"
    else:
        need = "plain accelerate: drop the deepspeed= key and launch without --use_deepspeed"
    raise ValueError(
        f"{path} was written under {launcher} with {meta.get('num_processes')} processes; resuming "
        f"its optimizer state needs {need}. To start from its weights only, use model.init={path}"
    )


def _read_state(file: Path, checkpoint: Path) -> dict[str, Any]:
    """A state file's contents; JSON only, so reading a crafted file cannot run code."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing; use model.init={checkpoint} to start from its weights")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not JSON ({err}); checkpoint states are never unpickled") from err
