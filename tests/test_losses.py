"""SAM 2's multi-mask loss against a per-object, per-mask reference and hand cases."""

import math

import torch

from sec_train.model.config import LossConfig
from sec_train.model.losses import multimask_losses


def reference_losses(masks, ious, scores, targets, cfg: LossConfig, num_objects: float) -> dict[str, float]:
    """Meta's rule written out per object and per mask, in float64."""
    totals = {"loss_focal": 0.0, "loss_dice": 0.0, "loss_iou": 0.0, "loss_object": 0.0}
    for obj in range(masks.shape[0]):
        t = targets[obj].double().flatten()
        present = bool(t.sum() > 0)
        per_mask = []
        for m in range(masks.shape[1]):
            x = masks[obj, m].double().flatten()
            p = torch.sigmoid(x)
            ce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
            p_t = torch.where(t > 0, p, 1 - p)
            alpha_t = torch.where(t > 0, cfg.focal_alpha, 1 - cfg.focal_alpha)
            focal = (alpha_t * (1 - p_t) ** cfg.focal_gamma * ce).mean().item()
            dice = 1 - (2 * (p * t).sum().item() + 1) / (p.sum().item() + t.sum().item() + 1)
            pred = x > 0
            inter = (pred & (t > 0)).sum().item()
            union = (pred | (t > 0)).sum().item()
            actual_iou = inter / max(union, 1)
            per_mask.append((focal, dice, abs(ious[obj, m].item() - actual_iou)))
        best = min(range(len(per_mask)), key=lambda i: per_mask[i][0] * cfg.focal + per_mask[i][1] * cfg.dice)
        if present:
            totals["loss_focal"] += per_mask[best][0]
            totals["loss_dice"] += per_mask[best][1]
            totals["loss_iou"] += sum(m[2] for m in per_mask) / len(per_mask)
        s = scores[obj, 0].item()
        prob = 1 / (1 + math.exp(-s))
        totals["loss_object"] += -math.log(prob) if present else -math.log(1 - prob)
    out = {k: v / num_objects for k, v in totals.items()}
    out["loss"] = (
        out["loss_focal"] * cfg.focal
        + out["loss_dice"] * cfg.dice
        + out["loss_iou"] * cfg.iou
        + out["loss_object"] * cfg.object_score
    )
    return out


def random_case(num_objects: int = 4, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.randn(num_objects, 3, size, size, generator=g) * 3
    ious = torch.rand(num_objects, 3, generator=g)
    scores = torch.randn(num_objects, 1, generator=g) * 2
    targets = torch.rand(num_objects, size, size, generator=g) > 0.6
    targets[1] = False  # one absent object
    return masks, ious, scores, targets


def test_matches_reference_loop():
    cfg = LossConfig()
    masks, ious, scores, targets = random_case()
    got = multimask_losses(masks, ious, scores, targets, cfg, num_objects=3.0)
    expected = reference_losses(masks, ious, scores, targets, cfg, num_objects=3.0)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert math.isclose(got[key].item(), value, rel_tol=1e-5, abs_tol=1e-6), key


def test_weights_and_focal_parameters_come_from_config():
    cfg = LossConfig(focal=3.0, dice=2.0, iou=0.5, object_score=4.0, focal_alpha=0.6, focal_gamma=1.0)
    masks, ious, scores, targets = random_case(seed=1)
    got = multimask_losses(masks, ious, scores, targets, cfg)
    expected = reference_losses(masks, ious, scores, targets, cfg, num_objects=4.0)
    for key, value in expected.items():
        assert math.isclose(got[key].item(), value, rel_tol=1e-5, abs_tol=1e-6), key


def test_absent_object_gets_only_the_object_loss():
    masks = torch.randn(1, 3, 8, 8, requires_grad=True)
    ious = torch.rand(1, 3, requires_grad=True)
    scores = torch.tensor([[1.5]], requires_grad=True)
    losses = multimask_losses(masks, ious, scores, torch.zeros(1, 8, 8, dtype=torch.bool), LossConfig())
    for key in ("loss_focal", "loss_dice", "loss_iou"):
        assert losses[key].item() == 0.0
    assert math.isclose(losses["loss_object"].item(), math.log1p(math.exp(1.5)), rel_tol=1e-6)
    losses["loss"].backward()
    assert masks.grad.abs().sum() == 0 and ious.grad.abs().sum() == 0
    assert scores.grad.abs().sum() > 0


def test_only_the_best_mask_gets_focal_and_dice_gradient():
    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, 2:6, 2:6] = True
    good = torch.where(target[0], 4.0, -4.0)
    masks = torch.stack([torch.zeros(8, 8), good, -good])[None].clone().requires_grad_(True)
    losses = multimask_losses(masks, torch.ones(1, 3), torch.zeros(1, 1), target, LossConfig())
    (losses["loss_focal"] + losses["loss_dice"]).backward()
    per_mask = masks.grad.abs().flatten(2).sum(-1)[0]
    assert per_mask[1] > 0 and per_mask[0] == 0 and per_mask[2] == 0
    # The IoU loss supervises all three masks' predictions.
    ious = torch.full((1, 3), 0.5, requires_grad=True)
    multimask_losses(masks.detach(), ious, torch.zeros(1, 1), target, LossConfig())["loss_iou"].backward()
    assert (ious.grad != 0).all()
