"""A model's J, F and J&F in memory: the trainer's periodic validation (`evaluate_model`).

Each video is propagated from each object's first annotation (SeC, or plain SAM 2) and scored
on its annotated frames, every annotated object on all of them but the first and last
(`metrics.score_video`). Videos with a scene change are also scored on the scored frames
before their first change (`pre_cut`) and at and after it (`post_cut`, where SeC's concept
guidance acts); the change frames are the synthetic ground truth's (`Video.scene_cuts`, from a
shard header) or, without it, those SeC's scene-change detector fires on. The `sec-train eval`
command, which writes predictions and follows the benchmarks' protocols exactly, is `cli.py`. As
SeC's VOS inference script by default, holes are not filled and an overlap goes to the highest
logit.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

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
from sec_train.infer.propagate import PropagationConfig, PropagationStats, SeCPropagator
from sec_train.infer.scene import SceneChangeDetector
from sec_train.infer.video import Video
from sec_train.model.sec import SeCModel

# SeC's vos_inference.py runs without post-processing unless given --apply_postprocessing
# (vos_evaluation/vos_inference.py:310,356; its documented commands do not give it)
EVAL_FILL_HOLE_AREA = 0
CUT_SEGMENTS = ("pre_cut", "post_cut")


@dataclass
class VideoResult:
    """One video's per-object scores, its scene cuts, per-segment (J, F) of each object (empty
    without a cut) and what propagating it cost."""

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
    out: dict[str, dict[int, tuple[float, float]]] = {segment: {} for segment in CUT_SEGMENTS}
    for segment, keep in zip(CUT_SEGMENTS, (positions < cut, positions >= cut)):
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
        for segment in CUT_SEGMENTS:
            scores = [pair for v in self.videos for pair in v.segments.get(segment, {}).values()]
            summary.update(_segment_means(segment, scores))
        summary["num_cut_videos"] = float(sum(bool(v.cuts) for v in self.videos))
        frames = sum(v.stats.num_frames for v in self.videos)
        summary["lvlm_calls"] = float(sum(v.stats.lvlm_calls for v in self.videos))
        summary["lvlm_calls_per_frame"] = summary["lvlm_calls"] / max(frames, 1)
        return summary


def evaluate_video(propagator: SeCPropagator, video: Video) -> VideoResult:
    """Propagates one video and scores it on its annotated frames, overall and before and after
    its first scene change (`Video.scene_cuts`, else the detector's)."""
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
    progress: bool = True,
) -> EvalResult:
    """Evaluates the videos in order (the first `max_videos` of them), with a progress bar
    unless `progress` is False (e.g. on all but one of several processes sharing a terminal)."""
    result = EvalResult()
    videos = itertools.islice(videos, max_videos)
    for video in tqdm(videos, total=max_videos, desc="eval", unit="video", disable=not progress):
        result.videos.append(evaluate_video(propagator, video))
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
        config = PropagationConfig(use_concept=use_concept, fill_hole_area=EVAL_FILL_HOLE_AREA)
        propagator = SeCPropagator(model, config)
        return evaluate_videos(propagator, open_videos(data), max_videos).summary()
    finally:
        model.train(was_training)
