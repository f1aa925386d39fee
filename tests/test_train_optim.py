"""Parameter groups and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sec_train.train.config import OptimConfig
from sec_train.train.optim import build_optimizer, build_scheduler, param_groups


def _model() -> nn.Module:
    model = nn.ModuleDict(
        {
            "enc": nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)),
            "head": nn.Linear(4, 2),
            "frozen": nn.Linear(4, 4),
        }
    )
    model["frozen"].requires_grad_(False)
    return model


def test_groups_split_lr_and_decay():
    cfg = OptimConfig(lr=1e-3, weight_decay=0.1, lr_groups={"enc": 1e-4, "enc.0": 5e-5})
    groups = {(g["lr"], g["weight_decay"]): sorted(g["names"]) for g in param_groups(_model(), cfg)}
    assert groups == {
        (5e-5, 0.1): ["enc.0.weight"],
        (5e-5, 0.0): ["enc.0.bias"],
        (1e-4, 0.0): ["enc.1.bias", "enc.1.weight"],
        (1e-3, 0.1): ["head.weight"],
        (1e-3, 0.0): ["head.bias"],
    }


def test_unknown_prefix_and_nothing_trainable_fail():
    with pytest.raises(ValueError, match=r"match no trainable parameter: \['frozen'\]"):
        param_groups(_model(), OptimConfig(lr_groups={"frozen": 1.0}))
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(nn.Linear(2, 2).requires_grad_(False), OptimConfig())


def test_schedule_matches_closed_form():
    cfg = OptimConfig(lr=2.0, lr_groups={"head": 1.0}, warmup=0.2, min_lr_ratio=0.1)
    optimizer = build_optimizer(_model(), cfg)
    scheduler = build_scheduler(optimizer, cfg, max_steps=10)
    seen = []
    for _ in range(10):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    warmup = 2
    for step, lrs in enumerate(seen):
        if step < warmup:
            factor = (step + 1) / (warmup + 1)
        else:
            factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (10 - warmup)))
        assert lrs == pytest.approx([g["initial_lr"] * factor for g in optimizer.param_groups])
    assert sorted(seen[warmup]) == pytest.approx([1.0, 1.0, 2.0, 2.0])
    assert isinstance(optimizer, torch.optim.AdamW)


def test_layer_decay_follows_sam2_rule():
    encoder = nn.Module()
    encoder.pos_embed = nn.Parameter(torch.zeros(1, 4))
    encoder.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
    encoder.neck = nn.Linear(4, 4)
    model = nn.ModuleDict({"enc": encoder, "head": nn.Linear(4, 2)})
    cfg = OptimConfig(lr=1.0, lr_groups={"enc": 0.5}, layer_decay=0.9, layer_decay_prefix="enc")
    lrs = {name: g["lr"] for g in param_groups(model, cfg) for name in g["names"]}
    # 3 blocks: block i scaled by 0.9^(3 - i), embeddings by 0.9^4, the neck and other modules by 1
    expected = {"enc.pos_embed": 0.5 * 0.9**4, "enc.neck.weight": 0.5, "head.weight": 1.0}
    expected.update({f"enc.blocks.{i}.weight": 0.5 * 0.9 ** (3 - i) for i in range(3)})
    for name, lr in expected.items():
        assert lrs[name] == pytest.approx(lr), name
