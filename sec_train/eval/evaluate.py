"""`sec-train eval`: J, F and J&F of a SeC model on DAVIS-style folders or shards.

    sec-train eval --checkpoint DIR --data DAVIS_ROOT_OR_SHARD_DIR [--subset val] [--sam2-only] [--json]

Each video is propagated from each object's first annotation (SeC, or plain SAM 2 with
`--sam2-only`) and scored on its annotated frames with the DAVIS semi-supervised protocol.
Videos with a scene change are also scored on the frames at and after their first change
("post-cut", where SeC's concept guidance acts) and on those before it ("pre-cut"); the change
frames are the synthetic ground truth's (a shard header's `scene_cuts`) or, without it, the
frames SeC's scene-change detector fires on. `evaluate_model` is the same evaluation for the
trainer's periodic validation.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sec_train.eval.datasets import open_videos
from sec_train.eval.metrics import (
    BOUNDARY_TOLERANCE,
    ObjectScore,
    db_eval_boundary,
    db_eval_iou,
    score_video,
    summarize,
)
from sec_train.infer.overlay import save_palette_png
from sec_train.infer.propagate import PropagationConfig, PropagationStats, SeCPropagator
from sec_train.infer.runtime import (
    add_model_arguments,
    autocast,
    load_model,
    propagation_config,
    resolve_device,
)
from sec_train.infer.scene import SceneChangeDetector
from sec_train.infer.video import Video
from sec_train.model.sec import SeCModel

SEGMENTS = ("pre_cut", "post_cut")


@dataclass
class VideoResult:
    """One video's per-object scores, its scene cuts, per-segment (J, F) of each object (empty
    without a cut; an object absent from a segment's scored frames is left out of it) and what
    propagating it cost."""

    name: str
    scores: dict[int, ObjectScore]
    stats: PropagationStats
    cuts: list[int] = field(default_factory=list)
    segments: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        j = float(np.mean([s.j for s in self.scores.values()]))
        f = float(np.mean([s.f for s in self.scores.values()]))
        means = {"J": j, "F": f, "J&F": (j + f) / 2}
        for segment, scores in self.segments.items():
            means.update(_segment_means(segment, list(scores.values())))
        return means


def _segment_means(segment: str, scores: list[tuple[float, float]]) -> dict[str, float]:
    """`J_<segment>`, `F_<segment>`, `J&F_<segment>` over (J, F) pairs; empty if there are none."""
    if not scores:
        return {}
    j, f = (float(np.mean(values)) for values in zip(*scores))
    return {f"J_{segment}": j, f"F_{segment}": f, f"J&F_{segment}": (j + f) / 2}


def segment_scores(
    gt: np.ndarray, pred: np.ndarray, frames: list[int], cut: int, object_ids: list[int]
) -> dict[str, dict[int, tuple[float, float]]]:
    """Each object's mean J and F over the scored frames before `cut` and at and after it.

    Args:
        gt, pred (`np.ndarray`): label maps `[T, H, W]` of the annotated frames `frames`.
        frames (`list[int]`): their frame positions, in order.
        cut (`int`): the frame position of the first scene change.
        object_ids (`list[int]`): the objects to score.

    Returns:
        `{"pre_cut": {obj: (J, F)}, "post_cut": {...}}` over the frames `score_video` scores
        (the first and last annotated frames are left out, as DAVIS does).
    """
    scored = slice(1, -1) if len(frames) >= 3 else slice(None)
    positions = np.asarray(frames)[scored]
    gt, pred = gt[scored], pred[scored]
    out: dict[str, dict[int, tuple[float, float]]] = {segment: {} for segment in SEGMENTS}
    for segment, keep in zip(SEGMENTS, (positions < cut, positions >= cut)):
        if not keep.any():
            continue
        for obj in object_ids:
            truth, guess = gt[keep] == obj, pred[keep] == obj
            j, f = db_eval_iou(truth, guess), db_eval_boundary(truth, guess, BOUNDARY_TOLERANCE)
            out[segment][obj] = (float(np.nanmean(j)), float(np.nanmean(f)))
    return out


@dataclass
class EvalResult:
    """All videos' results; `summary()` has the dataset means."""

    videos: list[VideoResult] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """`summarize`'s means, the LVLM calls and, over the videos with a cut, the per-segment
        means (`J&F_post_cut`, ...; absent when no video has a cut) and `num_cut_videos`."""
        summary = summarize({v.name: v.scores for v in self.videos})
        for segment in SEGMENTS:
            scores = [pair for v in self.videos for pair in v.segments.get(segment, {}).values()]
            summary.update(_segment_means(segment, scores))
        summary["num_cut_videos"] = float(sum(bool(v.cuts) for v in self.videos))
        frames = sum(v.stats.num_frames for v in self.videos)
        summary["lvlm_calls"] = float(sum(v.stats.lvlm_calls for v in self.videos))
        summary["lvlm_calls_per_frame"] = summary["lvlm_calls"] / max(frames, 1)
        return summary


def evaluate_video(propagator: SeCPropagator, video: Video, save_dir: Path | None = None) -> VideoResult:
    """Propagates one video and scores it on its annotated frames, overall and before and after
    its first scene change (`Video.scene_cuts`, else the detector's); optionally saves the masks."""
    stats = PropagationStats()
    annotated = sorted(video.annotations)
    predicted = {}
    detector = SceneChangeDetector(propagator.config.scene_threshold) if video.scene_cuts is None else None
    cuts = list(video.scene_cuts or [])
    for t, frame, labels in propagator.run(video, stats):
        if detector is not None and detector.update(frame):
            cuts.append(t)
        if t in video.annotations:
            predicted[t] = labels
        if save_dir is not None:
            (save_dir / video.name).mkdir(parents=True, exist_ok=True)
            save_palette_png(labels, save_dir / video.name / f"{video.frame_name(t)}.png")
    gt = np.stack([video.labels(t) for t in annotated])
    pred = np.stack([predicted[t] for t in annotated])
    # every annotated object was prompted on its first annotated frame, so all of them are scored
    object_ids = [int(i) for i in np.unique(gt) if i != 0]
    segments = segment_scores(gt, pred, annotated, min(cuts), object_ids) if cuts else {}
    return VideoResult(video.name, score_video(gt, pred, object_ids), stats, cuts, segments)


def evaluate_videos(
    propagator: SeCPropagator,
    videos: Iterable[Video],
    max_videos: int | None = None,
    save_dir: Path | None = None,
) -> EvalResult:
    """Evaluates the videos in order (the first `max_videos` of them), with a progress bar."""
    result = EvalResult()
    videos = itertools.islice(videos, max_videos)
    for video in tqdm(videos, total=max_videos, desc="eval", unit="video"):
        result.videos.append(evaluate_video(propagator, video, save_dir))
    if not result.videos:
        raise ValueError("no videos to evaluate")
    return result


def evaluate_model(
    model: SeCModel, data: str, *, use_concept: bool = True, max_videos: int | None = None
) -> dict[str, float]:
    """Dataset J, F and J&F (plus recall, decay and LVLM calls) of `model` on `data`.

    Args:
        model (`SeCModel`): the unwrapped model; put in eval mode for the run and restored after.
            It runs on its own device, under whatever autocast the caller has on.
        data (`str`): a DAVIS-style root or a shard directory.
        use_concept (`bool`): SeC's concept guidance; False evaluates plain SAM 2 tracking.
        max_videos (`int`, *optional*): evaluate only the first videos.
    """
    was_training = model.training
    model.eval()
    try:
        propagator = SeCPropagator(model, PropagationConfig(use_concept=use_concept))
        return evaluate_videos(propagator, open_videos(data), max_videos).summary()
    finally:
        model.train(was_training)


def format_table(result: EvalResult) -> str:
    """Per-video and mean J, F, J&F, post-cut J&F (`-` without a cut) and LVLM calls as a
    fixed-width table."""
    width = max(12, *(len(v.name) for v in result.videos))
    lines = [f"{'video':<{width}} {'objects':>7} {'J':>7} {'F':>7} {'J&F':>7} {'J&F cut':>8} {'LVLM':>5}"]
    rows = [(v.name, len(v.scores), v.means(), v.stats.lvlm_calls) for v in result.videos]
    s = result.summary()
    rows.append(("mean", int(s["num_objects"]), s, int(s["lvlm_calls"])))
    for name, objects, m, calls in rows:
        post = f"{m['J&F_post_cut']:.4f}" if "J&F_post_cut" in m else "-"
        scores = f"{m['J']:>7.4f} {m['F']:>7.4f} {m['J&F']:>7.4f}"
        lines.append(f"{name:<{width}} {objects:>7} {scores} {post:>8} {calls:>5}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sec-train eval", description=__doc__.split("\n")[0])
    add_model_arguments(parser)
    parser.add_argument(
        "--data", required=True, help="DAVIS-style root (JPEGImages/, Annotations/) or shard dir"
    )
    parser.add_argument("--subset", help="DAVIS ImageSets/2017/<subset>.txt, e.g. val")
    parser.add_argument("--max-videos", type=int, help="evaluate only the first N videos")
    parser.add_argument(
        "--save-masks", help="also write each video's predicted palette PNGs under this folder"
    )
    parser.add_argument("--json", action="store_true", help="print per-video and mean scores as JSON")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device)
    propagator = SeCPropagator(model, propagation_config(args, model))
    save_dir = Path(args.save_masks) if args.save_masks else None
    with autocast(device, args.dtype):
        result = evaluate_videos(propagator, open_videos(args.data, args.subset), args.max_videos, save_dir)
    if args.json:
        per_video = {
            v.name: {
                **v.means(),
                "scene_cuts": v.cuts,
                "lvlm_calls": v.stats.lvlm_calls,
                "objects": {o: s.as_dict() for o, s in v.scores.items()},
            }
            for v in result.videos
        }
        print(json.dumps({"videos": per_video, "mean": result.summary()}, indent=2))
    else:
        print(format_table(result))
    return 0
