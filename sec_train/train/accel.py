"""The `Accelerator` of a run: process group, precision, and DeepSpeed with "auto" values filled.

Precision is one of three (`resolve_precision`): "bf16" gives DeepSpeed (or accelerate) bf16 weights,
as SeC's stage 2 runs (`training/sec/deepspeed_zero2_sam2.json`); "fp32_autocast_bf16" keeps fp32
weights, gradients and optimizer under DeepSpeed and runs the forward under bf16 autocast
(`forward_autocast`), as SAM 2's trainer runs SeC's stage 1 (`amp.amp_dtype: bfloat16` in
`sec_sam2.1_hiera_l_finetune_maskmem22.yaml`); "fp32" is plain fp32.

DeepSpeed runs when the recipe's `deepspeed` names a JSON file, or when `accelerate launch` runs
DeepSpeed (its `deepspeed_config_file`, else `configs/deepspeed/zero{N}.json` for `--zero_stage N`);
the recipe wins. Its "auto" values come from the
recipe (batch size, accumulation, clipping, precision) and the model (bucket sizes).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DeepSpeedPlugin

from sec_train.train.config import TrainConfig

# the repository's configs/deepspeed, used for `accelerate launch --use_deepspeed --zero_stage N`
DEEPSPEED_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"


def init_process_group() -> PartialState:
    """Starts the process group before anything else touches it: gloo for CPU-only launches."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(backend="gloo") if distributed and not torch.cuda.is_available() else PartialState()


def resolve_precision(cfg: TrainConfig, cuda: bool | None = None) -> str:
    """The recipe's precision with "auto" resolved: on CUDA, "fp32_autocast_bf16" for stage 1
    (SAM 2's trainer) and "bf16" otherwise (SeC's stage-2 DeepSpeed); "fp32" on CPU. `cuda`
    (default: whether CUDA is here) resolves it for another machine (the memory planner)."""
    if cfg.precision != "auto":
        return cfg.precision
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return "fp32"
    return "fp32_autocast_bf16" if cfg.model.mode == "stage1" else "bf16"


def mixed_precision(cfg: TrainConfig) -> str:
    """accelerate's precision name: "bf16" for bf16 weights, else "no" (the trainer itself runs
    fp32-weight autocast, which DeepSpeed would otherwise turn into bf16 weights)."""
    return "bf16" if resolve_precision(cfg) == "bf16" else "no"


def forward_autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the training forward runs in: bf16 autocast for "fp32_autocast_bf16", else
    nothing (bf16 weights compute in bf16 by themselves)."""
    if resolve_precision(cfg) == "fp32_autocast_bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _hidden_size(model: torch.nn.Module) -> int:
    """The widest trainable matrix input, standing in for a transformer's hidden size."""
    widths = [p.shape[-1] for p in model.parameters() if p.requires_grad and p.ndim == 2]
    return max(widths, default=1024)


def deepspeed_config(cfg: TrainConfig, path: str, model: torch.nn.Module, world_size: int) -> dict[str, Any]:
    """Reads a DeepSpeed JSON and replaces its "auto" values from the recipe and the model.

    Raises:
        ValueError: a key is left "auto" that this function does not know how to fill.
    """
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"deepspeed={path}: cannot read DeepSpeed config: {err}") from err
    hidden = _hidden_size(model)
    values = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16.enabled": mixed_precision(cfg) == "bf16",
        "fp16.enabled": False,
        # the sizes transformers' Trainer derives from the hidden size
        "zero_optimization.reduce_bucket_size": hidden * hidden,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden,
    }
    left = _fill_auto(config, values, "")
    if left:
        raise ValueError(f"deepspeed={path}: cannot fill 'auto' for {left}; set them in the file")
    return config


def _fill_auto(node: dict[str, Any], values: dict[str, Any], prefix: str) -> list[str]:
    """Replaces "auto" leaves by `values[dotted key]` in place; returns the keys it could not fill."""
    left = []
    for key, value in node.items():
        dotted = prefix + key
        if isinstance(value, dict):
            left += _fill_auto(value, values, dotted + ".")
        elif value == "auto":
            if dotted in values:
                node[key] = values[dotted]
            else:
                left.append(dotted)
    return left


def make_accelerator(cfg: TrainConfig, model: torch.nn.Module) -> Accelerator:
    """The run's `Accelerator`; call `init_process_group()` first.

    The scheduler is stepped by the loop once per optimizer step (accelerate would otherwise step
    it once per process).
    """
    path = cfg.deepspeed
    if path is None and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
        path = os.environ.get(
            "ACCELERATE_DEEPSPEED_CONFIG_FILE", str(DEEPSPEED_CONFIGS / f"zero{stage}.json")
        )
    plugin = None
    if path is not None:
        ds = deepspeed_config(cfg, path, model, PartialState().num_processes)
        plugin = DeepSpeedPlugin(
            hf_ds_config=ds,
            gradient_accumulation_steps=cfg.grad_accum,
            gradient_clipping=cfg.optim.grad_clip,
            zero3_init_flag=False,
        )
    return Accelerator(
        mixed_precision=mixed_precision(cfg),
        gradient_accumulation_steps=cfg.grad_accum,
        deepspeed_plugin=plugin,
        step_scheduler_with_optimizer=False,
    )
