"""Concept-only segmentation at scene cuts: what SeC's concept finds on its own, without memory.

On a video's first scene cut the LVLM reads a keyframe bank of frame 0 (object 1 outlined) and
the cut frame, as `SeCPropagator` asks it there, and SAM 2 segments the cut frame from the
concept-conditioned features alone (`use_memory=False`), as the released stage 2
(`concept_only`) trains it. With no memory to fall back on, the mask is as good as the concept.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from sec_train.eval.datasets import open_videos
from sec_train.eval.metrics import db_eval_iou
from sec_train.infer.keyframes import KeyframeBank
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.infer.video import Video
from sec_train.model.sec import SeCModel


def cut_videos(data: str) -> list[Video]:
    """The videos of `data` with a recorded scene cut (synthetic shards and DAVIS roots hold them)."""
    videos = [v for v in open_videos(data) if v.scene_cuts]
    if not videos:
        raise ValueError(f"{data}: no video with a recorded scene cut")
    return videos


def cut_frame_concept(propagator: SeCPropagator, video: Video) -> torch.Tensor:
    """The concept [1, 256] SeC computes on the video's first cut with a bank of frame 0."""
    return first_cut_concept(
        propagator, video.frame(0), video.labels(0) == 1, video.frame(video.scene_cuts[0])
    )


def first_cut_concept(
    propagator: SeCPropagator, first_frame: np.ndarray, first_mask: np.ndarray, cut_frame: np.ndarray
) -> torch.Tensor:
    """The concept [1, 256] on a first cut: a bank of the first frame, its object outlined."""
    bank = KeyframeBank(propagator.model.lvlm_image_size)
    bank.add(0, first_frame, first_mask)
    return propagator.concepts([bank], cut_frame)


def concept_only_masks(propagator: SeCPropagator, video: Video, concepts: torch.Tensor) -> np.ndarray:
    """Bool [K, H, W]: object 1 on the video's first cut frame, segmented from each of the K
    `concepts` [K, 256] alone (the frame encoded once, the K concepts tracked as K objects)."""
    tracker, frame = propagator.model.tracker, video.frame(video.scene_cuts[0])
    features = propagator._encode(frame)
    state = tracker.init_state(len(concepts))
    out = tracker.track_frame(state, features, 0, concept=concepts, use_memory=False)
    return propagator._video_logits(out, frame.shape[:2]) > 0


def concept_only_iou(model: SeCModel, data: str) -> float:
    """Mean IoU of concept-only masks on the first cut frame of every video of `data` with a cut."""
    return float(np.mean(list(concept_only_ious(model, cut_videos(data)).values())))


@torch.no_grad()
def concept_only_ious(model: SeCModel, videos: Iterable[Video]) -> dict[str, float]:
    """`{video name: IoU}` of the concept-only mask of object 1 on each video's first cut frame."""
    propagator = SeCPropagator(model, PropagationConfig())
    ious = {}
    for video in videos:
        masks = concept_only_masks(propagator, video, cut_frame_concept(propagator, video))
        ious[video.name] = float(db_eval_iou(video.labels(video.scene_cuts[0]) == 1, masks[0]))
    return ious
