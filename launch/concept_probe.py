"""Where the concept path carries information and where it stops, on held-out concept-cut videos.

    python launch/concept_probe.py --data runs/demo/data/val/shards --trained runs/demo/stage2

On each video's cut frame, with the LVLM reading frame 0 (object outlined) and the cut frame:
- concept spread: how much the concept embedding differs between videos, relative to its norm
  (near 0: the LVLM says the same thing whatever it sees); the same for the `[SEG]` hidden state
  it is made from (near 0: the LLM's state collapsed; high while the concept is near 0:
  `text_hidden_fcs` did), and the fraction of `text_hidden_fcs`'s ReLU units that fire on any
  video (near 0: they died);
- concept-only IoU with the video's own concept, a zero concept and another video's concept
  (all equal: the concept does not steer the mask);
- memory-only IoU: plain SAM 2 tracking from frame 0 to the cut; then its IoU on the frame after
  the cut and over the cut frame and all after it, as tracked and with the ground truth given on
  the cut frame (what a perfect concept would give there: SeC reads the concept on cut frames
  only). Equal next-frame IoUs: the tracker does not read its memory, and the most the concept can
  add after the cut is what it adds on the cut frame itself;
- decoder sensitivity: how much the mask logits move when the conditioned features the mask
  decoder reads are replaced by zeros, relative to their size (near 0: the decoder segments from
  the high-resolution skip features alone, and neither memory nor concept can change its mask).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from sec_train.eval.concept import concept_only_masks, cut_frame_concept, cut_videos
from sec_train.eval.metrics import db_eval_iou
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.infer.runtime import load_model
from sec_train.infer.video import Video
from sec_train.model.sec import SeCModel


def decoder_sensitivity(propagator: SeCPropagator, video: Video, concept: torch.Tensor) -> float:
    """The decoder's relative logit change on the cut frame when its conditioned input is zeroed."""
    tracker = propagator.model.tracker
    features = propagator._encode(video.frame(video.scene_cuts[0]))
    out = tracker.track_frame(tracker.init_state(1), features, 0, concept=concept, use_memory=False)
    top = features.levels[-1]
    high_res = [tracker._to_map(x, level) for level, x in enumerate(features.levels[:-1])]
    blank = tracker._sam_heads(torch.zeros_like(tracker._to_map(top)), high_res, features.image_pe, True)
    return float((out.mask_logits - blank.mask_logits).abs().mean() / out.mask_logits.abs().mean())


def tracked_after_cut(propagator: SeCPropagator, video: Video, truth_at_cut: bool) -> list[float]:
    """IoU of plain SAM 2 tracking from frame 0's mask on the cut frame and each frame after it.
    With `truth_at_cut`, the cut frame's output is its ground truth, remembered like a tracked
    frame: what a perfect concept would give there (SeC reads the concept on cut frames only)."""
    tracker, cut = propagator.model.tracker, video.scene_cuts[0]
    state = tracker.init_state(1, len(video), memory_selection=propagator.config.memory_selection)
    ious = []
    for t in range(len(video)):
        frame, truth = video.frame(t), video.labels(t) == 1
        features = propagator._encode(frame)
        if t == 0:
            out = tracker.track_frame(state, features, t, mask_prompt=propagator._prompt_masks(truth[None]))
        elif t == cut and truth_at_cut:
            out = tracker.track_frame(state, features, t, mask_input=propagator._prompt_masks(truth[None]))
        else:
            out = tracker.track_frame(state, features, t)
        if t >= cut:
            mask = propagator._video_logits(out, frame.shape[:2])[0] > 0
            ious.append(float(db_eval_iou(truth, mask)))
    return ious


def memory_reading(propagator: SeCPropagator, video: Video) -> tuple[float, ...]:
    """Plain tracking's IoU on the cut frame, then on the next frame and over the cut frame and
    all after it, without and with the truth given at the cut."""
    plain, given = (tracked_after_cut(propagator, video, truth) for truth in (False, True))
    next_frame = [ious[1] if len(ious) > 1 else np.nan for ious in (plain, given)]
    return (plain[0], *next_frame, float(np.mean(plain)), float(np.mean(given)))


def spread(rows: torch.Tensor) -> float:
    """How much rows [N, D] differ, relative to their mean norm."""
    return float(rows.std(0).norm() / rows.norm(dim=1).mean())


def concepts_with_inputs(
    propagator: SeCPropagator, videos: list[Video]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each video's cut-frame concept [V, 256], the `[SEG]` states `text_hidden_fcs` read and the
    outputs of its ReLU, one row per video."""
    fcs, seen = propagator.model.text_hidden_fcs, {"seg": [], "relu": []}

    def keep(key: str, tensor: torch.Tensor) -> None:
        seen[key].append(tensor.reshape(-1, tensor.shape[-1]))

    hooks = [
        fcs[0].register_forward_hook(lambda _, inputs, __: keep("seg", inputs[0])),
        fcs[1].register_forward_hook(lambda _, __, out: keep("relu", out)),
    ]
    try:
        concepts = torch.cat([cut_frame_concept(propagator, v) for v in videos])
    finally:
        for hook in hooks:
            hook.remove()
    return concepts, torch.cat(seen["seg"]), torch.cat(seen["relu"])


def probe(model: SeCModel, data: str) -> dict[str, float]:
    propagator = SeCPropagator(model, PropagationConfig())
    videos = cut_videos(data)
    if len(videos) < 2:
        raise ValueError(f"{data}: the probe needs at least 2 videos with a recorded scene cut")
    with torch.no_grad():
        concepts, seg_states, relu_out = concepts_with_inputs(propagator, videos)
        rows = []
        for i, video in enumerate(videos):
            truth = video.labels(video.scene_cuts[0]) == 1
            # own concept, a zero one, another video's (the previous one's)
            tried = torch.stack([concepts[i], torch.zeros_like(concepts[i]), concepts[i - 1]])
            masks = concept_only_masks(propagator, video, tried)
            own, zero, other = db_eval_iou(np.broadcast_to(truth, masks.shape), masks)
            moved = decoder_sensitivity(propagator, video, concepts[i : i + 1])
            rows.append((own, zero, other, moved, *memory_reading(propagator, video)))
    keys = (
        "iou_own_concept",
        "iou_zero_concept",
        "iou_other_concept",
        "decoder_sensitivity",
        "iou_memory_only",
        "iou_next_frame",
        "iou_next_frame_truth_at_cut",
        "iou_post_cut",
        "iou_post_cut_truth_at_cut",
    )
    return {
        "videos": len(videos),
        "concept_spread": spread(concepts),
        "seg_state_spread": spread(seg_states),
        "fcs_relu_alive": float((relu_out > 0).any(0).float().mean()),
        **dict(zip(keys, map(float, np.nanmean(rows, axis=0)))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="held-out shard dir (its headers hold the cuts)")
    parser.add_argument("--trained", required=True, help="a training run, checkpoint or model dir")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    for key, value in probe(load_model(args.trained, torch.device("cpu")), args.data).items():
        print(f"{key:>28}: {value:.4f}" if isinstance(value, float) else f"{key:>28}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
