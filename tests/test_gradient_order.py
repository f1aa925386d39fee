"""SAM 2's trainable parameters get their gradients in the same order whatever the batch's
frames, as DeepSpeed ZeRO-2's bucketed reduction assumes (`sec_train.model.gradient_order`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from data_tools.synth import synthesize
from sec_train.data.loader import build_loader
from sec_train.model.build import build_sec_model
from sec_train.model.sec import SAM_SIDE
from sec_train.model.trainable import apply_trainable
from sec_train.train.config import load_config

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "toy_concept_stage2.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The toy concept recipe with the mask decoder trainable, and the first two batches of each
    of two processes, from the recipe's sampler on synthetic concept-cut videos."""
    root = tmp_path_factory.mktemp("concept_cut")
    synthesize(root, 16, seed=1, frames=12, height=96, width=128, objects=1, concept_cut=True)
    overrides = [f"data.train=[{root / 'shards'}]", "model.lvlm=toy_concept"]
    cfg = load_config(str(RECIPE), [*overrides, "model.trainable.mask_decoder=true"])
    torch.manual_seed(0)
    model = build_sec_model(cfg.model)
    apply_trainable(model, cfg.model.trainable)
    shapes = {
        "lvlm_image_size": model.lvlm_image_size,
        "sam_image_size": model.sam_image_size,
        "num_image_tokens": model.num_image_tokens,
    }
    batches = []
    for rank in (0, 1):
        loader = build_loader(
            cfg.data, mode="fused", tokenizer=model.tokenizer, batch_size=4, rank=rank, world_size=2, **shapes
        )
        batches += list(itertools.islice(iter(loader), 2))
    return model, batches


def _ready_order(model, batch, forward) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Parameter names in the order their gradients became ready, and the gradients."""
    order = []
    hooks = [
        param.register_post_accumulate_grad_hook(lambda _, name=name: order.append(name))
        for name, param in model.named_parameters()
        if param.requires_grad
    ]
    model.zero_grad(set_to_none=True)
    try:
        forward(batch)["loss"].backward()
    finally:
        for hook in hooks:
            hook.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return order, grads


def test_sam_side_gradients_come_last_in_one_order_whatever_the_frames(setup):
    model, batches = setup
    assert len({tuple(b.sam_frames_per_sample.tolist()) for b in batches}) > 1
    orders = [_ready_order(model, batch, model)[0] for batch in batches]
    assert all(order == orders[0] for order in orders)
    sam_side = [name for name in orders[0] if name.startswith(SAM_SIDE)]
    assert len(sam_side) > 50 and orders[0][-len(sam_side) :] == sam_side  # after every other one
    # without it the order follows the frames: what broke a 2-process ZeRO-2 run of this recipe
    unordered = [_ready_order(model, batch, model._losses)[0] for batch in batches]
    assert any(order != unordered[0] for order in unordered)


def test_the_gradients_themselves_do_not_change(setup):
    model, batches = setup
    torch.manual_seed(0)
    _, ordered = _ready_order(model, batches[0], model)
    torch.manual_seed(0)
    _, plain = _ready_order(model, batches[0], model._losses)
    assert ordered.keys() == plain.keys()
    for name, grad in ordered.items():
        torch.testing.assert_close(grad, plain[name], rtol=1e-5, atol=1e-7, msg=name)
