"""The `Accelerator` of a run: process group, precision, and DeepSpeed with "auto" values filled.

DeepSpeed runs when the recipe's `deepspeed` names a JSON file, or when `accelerate launch` runs
DeepSpeed (its `deepspeed_config_file`, else `configs/deepspeed/zero{N}.json` for `--zero_stage N`);
the recipe wins. Its "auto" values come from the
recipe (batch size, accumulation, clipping, precision) and the model (bucket sizes).
"""

from __future__ import annotations

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


def mixed_precision(cfg: TrainConfig) -> str:
    """accelerate's precision name: bf16 on CUDA under "auto", fp32 ("no") on CPU."""
    if cfg.precision == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return "bf16" if cfg.precision == "bf16" else "no"


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
