"""Resuming a DeepSpeed ZeRO checkpoint on another world size, through DeepSpeed's universal
checkpoint format.

ZeRO-2/3 shards are cut for the world size that wrote them. DeepSpeed's `ds_to_universal`
rewrites them per parameter (fp32 weight, Adam moments, step), which any world size can load.
`load_checkpoint` converts a checkpoint on first need, once, into its `universal/` folder; to
convert ahead of time (e.g. on a CPU node before the job starts)::

    python -m sec_train.train.universal runs/x/checkpoints/step-00000200
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

logger = logging.getLogger(__name__)

UNIVERSAL = "universal"
_SHARDS = "pytorch_model"  # accelerate's DeepSpeed checkpoint tag


def convert_to_universal(checkpoint: Path) -> Path:
    """Converts `checkpoint`'s ZeRO shards into `checkpoint/universal` unless done already.

    Writes into a temporary folder and renames it, so an interrupted conversion is redone.
    """
    from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal

    target = checkpoint / UNIVERSAL
    if target.is_dir():
        return target
    tmp = checkpoint / f".tmp-{UNIVERSAL}"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"converting {checkpoint} to DeepSpeed's universal format (once) ...", file=sys.stderr, flush=True)
    args = argparse.Namespace(
        input_folder=str(checkpoint / _SHARDS),
        output_folder=str(tmp),
        num_extract_workers=1,
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        # our engine saves no `universal_checkpoint_info`; DeepSpeed's default is right for it
        inject_missing_state=True,
    )
    ds_to_universal(args)
    os.rename(tmp, target)
    print(f"universal checkpoint: {target}", file=sys.stderr, flush=True)
    return target


def load_universal(accelerator: Accelerator, checkpoint: Path) -> None:
    """Loads model, optimizer and scheduler of a DeepSpeed `checkpoint` written by another world
    size, converting it first if needed (on the main process; the others wait)."""
    if accelerator.is_main_process:
        convert_to_universal(checkpoint)
    accelerator.wait_for_everyone()
    engine = accelerator.deepspeed_engine_wrapped.engine
    # DeepSpeed's universal load copies the first group's hyperparameters into every group;
    # ours differ (no weight decay on 1-d parameters, per-module learning rates)
    hyper = [{k: v for k, v in group.items() if k != "params"} for group in engine.optimizer.param_groups]
    engine._config.load_universal_checkpoint = True
    try:
        loaded, _ = engine.load_checkpoint(
            str(checkpoint), tag=UNIVERSAL, load_module_strict=False, load_lr_scheduler_states=False
        )
    finally:
        engine._config.load_universal_checkpoint = False
    if loaded is None:
        raise FileNotFoundError(f"{checkpoint / UNIVERSAL}: DeepSpeed found no universal checkpoint")
    (scheduler,) = accelerator._schedulers
    scheduler.scheduler.load_state_dict(torch.load(checkpoint / "scheduler.bin", weights_only=True))
    for group, values, lr in zip(engine.optimizer.param_groups, hyper, scheduler.get_last_lr()):
        group.update(values, lr=lr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a DeepSpeed checkpoint (a step-* folder)")
    convert_to_universal(parser.parse_args(argv).checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
