"""SeC's stage 1 (pixel-level association): SAM 2 tracking losses over training clips.

Per clip: frame 0 gets its GT mask as a prompt, `stage1_tracked_frames` random later frames are
tracked from memory, and every other frame takes its GT mask as input, so the memory bank stays
clean and spans the whole clip. SAM 2's multi-mask loss is taken on the tracked frames, summed
over them and divided by the number of (non-padding) objects in the batch, as Meta's trainer
does per GPU.
"""

from __future__ import annotations

import torch

from sec_train.model.config import ModelConfig
from sec_train.model.losses import multimask_losses
from sec_train.model.tracker import Sam2Tracker
from sec_train.types import LossDict, Stage1Batch


def pick_tracked_frames(num_frames: int, num_tracked: int, generator: torch.Generator) -> list[int]:
    """`num_tracked` distinct frames among 1..num_frames-1 (all of them if fewer), sorted."""
    later = torch.randperm(num_frames - 1, generator=generator)[:num_tracked] + 1
    return sorted(later.tolist())


def stage1_losses(
    tracker: Sam2Tracker,
    images_norm: torch.Tensor,
    batch: Stage1Batch,
    cfg: ModelConfig,
    generator: torch.Generator,
) -> LossDict:
    """The stage-1 loss of a batch of clips.

    Args:
        tracker (`Sam2Tracker`): the SAM 2 to train (its train/eval mode applies).
        images_norm (`torch.Tensor` of shape `(B, T, 3, S, S)`): `batch.images` normalised.
        batch (`Stage1Batch`): GT masks [B, T, K, S, S] and `object_valid` [B, K].
        cfg (`ModelConfig`): `stage1_tracked_frames` and the loss weights.
        generator (`torch.Generator`): a CPU generator choosing the tracked frames.

    Returns:
        `LossDict`: "loss" and its parts (see `multimask_losses`).
    """
    num_clips, num_frames = images_norm.shape[:2]
    if num_frames < 2:
        raise ValueError(f"stage-1 clips need at least 2 frames, batch {batch.keys} has {num_frames}")
    if cfg.stage1_tracked_frames < 1:
        raise ValueError(f"stage1_tracked_frames must be at least 1, got {cfg.stage1_tracked_frames}")
    if not batch.object_valid.any():
        raise ValueError(f"stage-1 batch {batch.keys} has no valid object")
    # One image-encoder call for every frame of the batch.
    features = tracker.encode_frames(images_norm.flatten(0, 1))
    predictions, targets = [], []
    for b in range(num_clips):
        valid = batch.object_valid[b]
        if not valid.any():
            continue
        masks = batch.masks[b][:, valid]
        tracked = pick_tracked_frames(num_frames, cfg.stage1_tracked_frames, generator)
        clip = features.frames(b * num_frames, (b + 1) * num_frames)
        outputs = tracker.track_clip(clip, masks, tracked)
        predictions += [outputs[t] for t in tracked]
        targets += [masks[t] for t in tracked]
    return multimask_losses(
        torch.cat([p.high_res_multimasks for p in predictions]),
        torch.cat([p.ious for p in predictions]),
        torch.cat([p.object_score_logits for p in predictions]),
        torch.cat(targets),
        cfg.loss,
        num_objects=float(batch.object_valid.sum()),
    )
