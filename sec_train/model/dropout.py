"""Dropout masks for CPU training that are cheap to draw and to keep.

PyTorch's CPU dropout draws its mask with `bernoulli_` (about 60 M values/s on one core), keeps
it for backward as a tensor of the input's dtype, and multiplies twice. In SeC's stage-2 step
(LoRA dropout 0.05 on seven projections per LLM layer, run twice under activation checkpointing,
and SAM 2's dropout 0.1) that was 13 % of a CPU step. `keep_mask` draws 16 random bits per value
from 64-bit integers (several times faster) and the mask stays boolean. `use_fast_cpu_dropout`
switches a model's `nn.Dropout` modules to `FastCPUDropout`, which uses it on CPU in training and
is `nn.Dropout` everywhere else (CUDA's fused dropout is fast already).
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 2**16  # a value drops when its 16 random bits fall below round(p * 2**16)


def drop_share(p: float) -> float:
    """The probability a value drops with `keep_mask(..., p)`: p rounded to a multiple of 2**-16."""
    return round(p * _LEVELS) / _LEVELS


def keep_mask(shape: torch.Size, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean mask of `shape`, True (kept) with probability 1 - `drop_share(p)`, drawn from
    `generator` (default: torch's global CPU generator, so seeded runs repeat)."""
    numel = shape.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, (-(-numel // 4),), dtype=torch.int64, generator=generator)
    return bits.view(torch.int16)[:numel].view(shape) >= round(p * _LEVELS) - _LEVELS // 2


class FastCPUDropout(nn.Dropout):
    """`nn.Dropout` whose CPU training path uses `keep_mask`: the same distribution (p rounded to
    a multiple of 2**-16), a boolean mask kept for backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        kept = keep_mask(x.shape, self.p)
        return torch.where(kept, x * (1 / (1 - drop_share(self.p))), 0.0)


def use_fast_cpu_dropout(model: nn.Module) -> int:
    """Turns every plain `nn.Dropout` of `model` with p > 0 into a `FastCPUDropout` (in place; no
    state changes, the module keeps its p). Returns how many were switched."""
    switched = 0
    for module in model.modules():
        if type(module) is nn.Dropout and module.p > 0:
            module.__class__ = FastCPUDropout
            switched += 1
    return switched
