"""Parameter groups (per-module learning rates, no decay on biases and norms) and the schedule."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from sec_train.train.config import OptimConfig

_BLOCK = re.compile(r"\.blocks\.(\d+)\.")


def _group_lr(name: str, cfg: OptimConfig) -> float:
    """The learning rate of parameter `name`: the longest matching `lr_groups` prefix, else `lr`."""
    matches = [prefix for prefix in cfg.lr_groups if name == prefix or name.startswith(prefix + ".")]
    return cfg.lr_groups[max(matches, key=len)] if matches else cfg.lr


def _layer_scales(names: list[str], cfg: OptimConfig) -> dict[str, float]:
    """Layer-wise lr factors under `cfg.layer_decay_prefix` (SAM 2's rule for Hiera: embeddings
    are layer 0, block i is layer i + 1, everything after the blocks is the top layer)."""
    inside = [n for n in names if n.startswith(cfg.layer_decay_prefix + ".")]
    blocks = {n: int(m.group(1)) for n in inside if (m := _BLOCK.search(n))}
    top = max(blocks.values(), default=-1) + 2
    scales = {}
    for name in inside:
        layer = blocks[name] + 1 if name in blocks else (0 if "embed" in name else top)
        scales[name] = cfg.layer_decay ** (top - layer)
    return scales


def _decays(name: str, param: nn.Parameter) -> bool:
    """Weight decay applies to matrices and kernels, not to biases, norm scales or embeddings'
    1-d companions (position scalars, layer-scale vectors)."""
    return param.ndim >= 2 and "norm" not in name.lower()


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Splits the trainable parameters of `model` into AdamW groups.

    Args:
        model (`nn.Module`): the model; only parameters with `requires_grad` are grouped.
        cfg (`OptimConfig`): `lr`, `lr_groups` (name prefix -> lr), `layer_decay` and
            `weight_decay`.

    Returns:
        One dict per (lr, decay) pair with keys "params", "lr", "weight_decay" and "names" (the
        parameter names, for logging and tests), ordered by first appearance.

    Raises:
        ValueError: nothing is trainable, or an `lr_groups` prefix matches no trainable parameter
            (a misspelt module name would otherwise silently train at the base rate).
    """
    groups: dict[tuple[float, bool], dict] = {}
    used_prefixes = set()
    trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    scales = _layer_scales([name for name, _ in trainable], cfg) if cfg.layer_decay != 1.0 else {}
    for name, param in trainable:
        lr = _group_lr(name, cfg) * scales.get(name, 1.0)
        used_prefixes.update(p for p in cfg.lr_groups if name == p or name.startswith(p + "."))
        decay = _decays(name, param)
        group = groups.setdefault(
            (lr, decay),
            {"params": [], "names": [], "lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0},
        )
        group["params"].append(param)
        group["names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameters; check model.trainable in the recipe")
    unused = sorted(set(cfg.lr_groups) - used_prefixes)
    if unused:
        raise ValueError(f"optim.lr_groups prefixes match no trainable parameter: {unused}")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, cfg)`; each group keeps its peak lr as "initial_lr"."""
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, cfg)]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def warmup_steps(cfg: OptimConfig, max_steps: int) -> int:
    """`cfg.warmup` as a step count: a fraction of `max_steps` when below 1."""
    return round(cfg.warmup * max_steps) if cfg.warmup < 1 else int(cfg.warmup)


def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    """The multiplier of the peak lr at optimizer step `step` (0-based): linear warm-up from
    1/(warmup+1) to 1 over `warmup` steps, then a cosine from 1 to `min_ratio` at `max_steps`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine to `cfg.min_lr_ratio`, stepped once per optimizer step."""
    warmup = warmup_steps(cfg, max_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, max_steps, cfg.min_lr_ratio)
    )
