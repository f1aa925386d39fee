"""The trainer's step against a hand-written reference: accumulation, clipping, AdamW and the
schedule, and the non-finite-loss rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sec_train.train.config import load_config
from sec_train.train.loop import NonFiniteLossError, Trainer


class Regression(nn.Module):
    """A model with the SeC forward contract: batch in, loss dict out."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        mse = (self.linear(batch[:, :3]).squeeze(1) - batch[:, 3]).pow(2).mean()
        return {"loss": 2 * mse, "loss_mse": mse}


def _trainer(tmp_path, *overrides: str) -> Trainer:
    cfg = load_config(None, [f"out_dir={tmp_path}", "wandb.mode=disabled", "max_steps=4", *overrides])
    torch.manual_seed(0)
    return Trainer(cfg, model=Regression())


def _batches(count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 4, generator=generator) * 3 for _ in range(count)]


def test_accumulated_clipped_steps_match_reference(tmp_path):
    trainer = _trainer(
        tmp_path,
        "grad_accum=2",
        "optim.lr=0.1",
        "optim.grad_clip=0.5",
        "optim.warmup=1",
        "optim.weight_decay=0.1",
    )
    reference = Regression()
    reference.load_state_dict(trainer.unwrapped.state_dict())
    weight, bias = reference.linear.weight, reference.linear.bias
    optimizer = torch.optim.AdamW(
        [{"params": [weight], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}], lr=0.1
    )
    batches = _batches(8)
    for step in range(4):
        pair = batches[2 * step : 2 * step + 2]
        assert trainer.train_step(pair[0]) is None
        metrics = trainer.train_step(pair[1])
        losses = [reference(b)["loss"] for b in pair]
        (sum(losses) / 2).backward()
        norm = torch.nn.utils.clip_grad_norm_([weight, bias], 0.5)
        lr = 0.1 * (0.5 if step == 0 else 0.5 * (1 + math.cos(math.pi * (step - 1) / 3)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad()
        assert metrics["lr"] == pytest.approx(lr)
        assert metrics["grad_norm"] == pytest.approx(norm.item(), rel=1e-5)
        assert metrics["loss"] == pytest.approx(sum(v.item() for v in losses) / 2, rel=1e-6)
        assert metrics["loss_mse"] == pytest.approx(metrics["loss"] / 2, rel=1e-6)
        assert trainer.step == step + 1
    torch.testing.assert_close(trainer.unwrapped.linear.weight, weight)
    torch.testing.assert_close(trainer.unwrapped.linear.bias, bias)


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path):
    trainer = _trainer(tmp_path, "max_nonfinite=3")
    good, bad = _batches(1)[0], torch.full((4, 4), float("nan"))
    before = trainer.unwrapped.linear.weight.detach().clone()
    assert trainer.train_step(bad) is None
    assert torch.equal(trainer.unwrapped.linear.weight, before) and trainer.step == 0
    assert trainer.train_step(good) is not None and trainer.step == 1
    assert trainer.train_step(bad) is None and trainer.train_step(bad) is None
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row at step 1"):
        trainer.train_step(bad)
    assert trainer.nonfinite_total == 4
