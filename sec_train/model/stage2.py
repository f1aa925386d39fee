"""SeC's stage 2 (concept guidance): the concept from the LVLM, SAM 2's target-frame prediction
guided by it, and the stage-2 losses.

The LVLM's last hidden state at a sample's last `[SEG]` -> `text_hidden_fcs` -> a 256-d concept.
On the sample's target frame (the last of its SAM frames):

- "concept_only" (the released recipe): SAM 2's features of the target frame are conditioned on
  the concept by `token_attn` alone -> mask decoder; the memory bank is never read.
- "fused" (what inference does): the tracker runs over the sample's SAM clip from a GT-mask
  prompt on its first frame; on the target frame the mask decoder sees the average of memory-
  and concept-conditioned features.

Losses: SAM 2's multi-mask loss on the target frame plus the LLM's cross-entropy on the answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sec_train.model.config import LossConfig
from sec_train.model.losses import multimask_losses
from sec_train.model.tracker import FrameFeatures, FrameOutput, Sam2Tracker
from sec_train.tokens import SEG_TOKEN
from sec_train.types import LossDict, Stage2Batch


def concept_from_hidden(
    text_hidden_fcs: nn.Module,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    seg_token_id: int,
    keys: list[str],
) -> torch.Tensor:
    """`text_hidden_fcs` of the hidden state at each sample's last `[SEG]` -> [B, 256] float32.

    Args:
        hidden (`torch.Tensor` of shape `(B, L, h)`): the LLM's last hidden states.
        input_ids (`torch.Tensor` of shape `(B, L)`): the prompts.
        keys (`list[str]`): sample names for errors (may be empty).
    """
    is_seg = input_ids == seg_token_id
    missing = (~is_seg.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        names = [keys[i] if i < len(keys) else f"#{i}" for i in missing]
        raise ValueError(f"samples {names} have no {SEG_TOKEN} token in input_ids")
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    last = torch.where(is_seg, positions, -1).amax(dim=1)
    seg_hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return text_hidden_fcs(seg_hidden).float()


def lm_loss(lm_head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on labelled positions; the LM head runs on those rows only."""
    targets = labels[:, 1:]
    keep = targets != -100
    if not keep.any():
        return hidden.sum() * 0.0
    logits = lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep])


def target_outputs(
    tracker: Sam2Tracker, images_norm: torch.Tensor, batch: Stage2Batch, concept: torch.Tensor, mode: str
) -> FrameOutput:
    """SAM 2's prediction on each sample's target frame (the last of its SAM frames).

    The samples are tracked together as the objects of one state (samples with clips of one length
    in fused mode), not one by one: the same outputs, a few large calls instead of many small ones.

    Args:
        images_norm (`torch.Tensor` of shape `(N, 3, S, S)`): `batch.sam_images` normalised.
        concept (`torch.Tensor` of shape `(B, 256)`): each sample's concept.
        mode (`str`): "concept_only" or "fused".

    Returns:
        `FrameOutput`: B objects, the samples in order.
    """
    lengths = batch.sam_frames_per_sample.to(images_norm.device)
    starts = lengths.cumsum(0) - lengths
    if mode == "concept_only":
        # only the target frames are encoded: concept-only mode never reads the memory bank
        features = tracker.encode_frames(images_norm[starts + lengths - 1])
        state = tracker.init_state(len(lengths))
        return tracker.track_frame(state, features, 0, concept=concept, use_memory=False, update_memory=False)
    features, masks = tracker.encode_frames(images_norm), batch.sam_masks
    outputs, groups = [], []
    for length in lengths.unique().tolist():
        group = torch.nonzero(lengths == length).flatten()
        outputs.append(_track_fused(tracker, features, masks, starts[group], length, concept[group]))
        groups.append(group)
    return FrameOutput.cat(outputs, order=torch.cat(groups).argsort())


def _track_fused(
    tracker: Sam2Tracker,
    features: FrameFeatures,
    masks: torch.Tensor,
    starts: torch.Tensor,
    length: int,
    concept: torch.Tensor,
) -> FrameOutput:
    """N samples' clips of `length` frames from `starts`, tracked as N objects: GT-mask prompt on
    frame 0, memory tracking after it, memory+concept fusion on the last frame."""
    last = length - 1
    state = tracker.init_state(len(starts), length)
    tracker.track_frame(state, features.select(starts), 0, mask_prompt=masks[starts])
    for t in range(1, last):
        tracker.track_frame(state, features.select(starts + t), t)
    target = features.select(starts + last)
    return tracker.track_frame(state, target, last, concept=concept, update_memory=False)


def target_losses(outputs: FrameOutput, batch: Stage2Batch, cfg: LossConfig) -> LossDict:
    """SAM 2's multi-mask loss of the target-frame `outputs` against each sample's target mask."""
    targets = batch.sam_masks[batch.sam_frames_per_sample.cumsum(0) - 1]
    return multimask_losses(
        outputs.high_res_multimasks, outputs.ious, outputs.object_score_logits, targets, cfg
    )
