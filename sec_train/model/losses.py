"""SAM 2's multi-mask loss, as Meta's `training/loss_fns.py` (MultiStepMultiMasksAndIous) computes it.

Per prediction (one object on one frame) with M masks:
- sigmoid focal loss (alpha 0.25, gamma 2) and dice loss on every mask; only the mask with the
  lowest `focal * w_focal + dice * w_dice` back-propagates them;
- L1 between the predicted IoU and the actual IoU of every mask, averaged over the M masks;
- focal, dice and IoU count only where the object is present in the target;
- object-score loss: binary cross-entropy (focal with gamma 0 and no alpha) on "object present".
Each part is summed over predictions and divided by the number of objects, so a clip's frames
add up as in Meta's trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sec_train.model.config import LossConfig
from sec_train.types import LossDict


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """RetinaNet's focal loss per element; `alpha < 0` disables the class weighting."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss over the last dimension (flattened pixels), with SAM 2's +1 smoothing."""
    probs = logits.sigmoid()
    denominator = probs.sum(-1) + targets.sum(-1)
    numerator = denominator - (probs - targets).abs().sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded logits with the target over the last dimension (no gradient)."""
    pred, gt = logits > 0, targets > 0
    intersection = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return intersection / union.clamp(min=1.0)


def multimask_losses(
    multimasks: torch.Tensor,
    ious: torch.Tensor,
    object_score_logits: torch.Tensor,
    targets: torch.Tensor,
    cfg: LossConfig,
    num_objects: float | None = None,
) -> LossDict:
    """SAM 2's loss over P predictions (objects, or object-frame pairs).

    Args:
        multimasks (`torch.Tensor` of shape `(P, M, H, W)`): mask logits at target resolution.
        ious (`torch.Tensor` of shape `(P, M)`): predicted IoUs.
        object_score_logits (`torch.Tensor` of shape `(P, 1)`): object-present logits.
        targets (`torch.Tensor` of shape `(P, H, W)`): bool or {0, 1} GT masks.
        cfg (`LossConfig`): weights and focal parameters.
        num_objects (`float`, *optional*): the normaliser; defaults to P.

    Returns:
        `LossDict` with "loss" (weighted total), "loss_focal", "loss_dice", "loss_iou", "loss_object".
    """
    if multimasks.shape[0] != targets.shape[0] or multimasks.shape[-2:] != targets.shape[-2:]:
        raise ValueError(f"masks {list(multimasks.shape)} do not match targets {list(targets.shape)}")
    num_objects = float(num_objects if num_objects is not None else max(targets.shape[0], 1))
    logits = multimasks.float().flatten(2)
    gt = targets.float().flatten(1).unsqueeze(1).expand_as(logits)
    focal = sigmoid_focal_loss(logits, gt, cfg.focal_alpha, cfg.focal_gamma).mean(-1)
    dice = dice_loss(logits, gt)
    iou = F.l1_loss(ious.float(), mask_iou(logits, gt), reduction="none")
    best = (focal * cfg.focal + dice * cfg.dice).argmin(dim=-1, keepdim=True)
    present = (gt[:, 0] > 0).any(dim=-1).float()
    object_loss = sigmoid_focal_loss(object_score_logits.float()[:, 0], present, alpha=-1.0, gamma=0.0)
    parts = {
        "loss_focal": (focal.gather(1, best)[:, 0] * present).sum() / num_objects,
        "loss_dice": (dice.gather(1, best)[:, 0] * present).sum() / num_objects,
        "loss_iou": (iou.mean(-1) * present).sum() / num_objects,
        "loss_object": object_loss.sum() / num_objects,
    }
    weights = {
        "loss_focal": cfg.focal,
        "loss_dice": cfg.dice,
        "loss_iou": cfg.iou,
        "loss_object": cfg.object_score,
    }
    total = sum(parts[k] * w for k, w in weights.items())
    return {"loss": total, **parts}
