"""Stage-1 loss: finite, trains the memory attention, follows the generator, ignores padding."""

import math

import torch
from transformers import Sam2VideoModel

from sec_train.model.config import ModelConfig
from sec_train.model.sam2 import normalize_images, toy_sam2_config
from sec_train.model.stage1 import pick_tracked_frames, stage1_losses
from sec_train.model.tracker import Sam2Tracker
from sec_train.types import Stage1Batch

SIZE, FRAMES = 128, 5


def toy_batch() -> Stage1Batch:
    """Two clips; the second has one real object and one padding object."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, FRAMES, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    masks = torch.zeros(2, FRAMES, 2, SIZE, SIZE, dtype=torch.bool)
    for t in range(FRAMES):
        masks[:, t, 0, 10 + 4 * t : 60 + 4 * t, 20:90] = True
        masks[0, t, 1, 70:120, 5 * t : 40 + 5 * t] = True
    masks[1, 3, 0] = False  # the object leaves the frame
    valid = torch.tensor([[True, True], [True, False]])
    return Stage1Batch(images=images, masks=masks, object_valid=valid, keys=["a", "b"])


def run(sam2: Sam2VideoModel, batch: Stage1Batch, seed: int) -> dict[str, torch.Tensor]:
    cfg = ModelConfig(mode="stage1", stage1_tracked_frames=2)
    images = normalize_images(batch.images, torch.float32)
    return stage1_losses(Sam2Tracker(sam2), images, batch, cfg, torch.Generator().manual_seed(seed))


def test_pick_tracked_frames_follows_the_generator():
    picks = {tuple(pick_tracked_frames(30, 8, torch.Generator().manual_seed(s))) for s in range(5)}
    assert len(picks) > 1
    for pick in picks:
        assert len(pick) == 8 and list(pick) == sorted(set(pick)) and 0 not in pick and max(pick) < 30
    again = pick_tracked_frames(30, 8, torch.Generator().manual_seed(3))
    assert again == pick_tracked_frames(30, 8, torch.Generator().manual_seed(3))
    assert pick_tracked_frames(4, 8, torch.Generator().manual_seed(0)) == [1, 2, 3]


def test_stage1_loss_trains_memory_attention_and_follows_the_generator():
    torch.manual_seed(0)
    sam2 = Sam2VideoModel(toy_sam2_config(num_maskmem=4)).eval()  # eval: no dropout, comparable runs
    batch = toy_batch()
    losses = run(sam2, batch, seed=1)
    assert set(losses) == {"loss", "loss_focal", "loss_dice", "loss_iou", "loss_object"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    losses["loss"].backward()
    grads = [p.grad for p in sam2.memory_attention.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0

    # Seeds 1 and 3 pick different frames ([2, 4] and [3, 4] of 1..4): the loss follows.
    with torch.no_grad():
        same = run(sam2, batch, seed=1)["loss"]
        other = run(sam2, batch, seed=3)["loss"]
    assert same.item() == losses["loss"].item()
    assert other.item() != same.item()


def test_padding_objects_are_ignored():
    torch.manual_seed(0)
    sam2 = Sam2VideoModel(toy_sam2_config(num_maskmem=4)).eval()
    batch = toy_batch()
    with torch.no_grad():
        before = run(sam2, batch, seed=0)
        batch.masks[1, :, 1] = True  # garbage under the padding object
        after = run(sam2, batch, seed=0)
    for key in before:
        assert before[key].item() == after[key].item(), key
