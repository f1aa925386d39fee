"""A model's J, F and J&F in memory: the trainer's periodic validation (`evaluate_model`).

Each video is propagated from each object's first annotation (SeC, or plain SAM 2) and scored
on its annotated frames, every annotated object on all of them but the first and last
(`metrics.score_video`). The `sec-train eval` command, which writes predictions and follows
the benchmarks' protocols exactly, is `cli.py`. As SeC's VOS
inference script by default, holes are not filled and an overlap goes to the highest logit.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from sec_train.eval.datasets import open_videos
from sec_train.eval.metrics import ObjectScore, score_video, summarize
from sec_train.infer.propagate import PropagationConfig, PropagationStats, SeCPropagator
from sec_train.infer.video import Video
from sec_train.model.sec import SeCModel

# SeC's vos_inference.py runs without post-processing unless given --apply_postprocessing
# (vos_evaluation/vos_inference.py:310,356; its documented commands do not give it)
EVAL_FILL_HOLE_AREA = 0


@dataclass
class VideoResult:
    """One video's per-object scores and what propagating it cost."""

    name: str
    scores: dict[int, ObjectScore]
    stats: PropagationStats

    def means(self) -> dict[str, float]:
        j = float(np.mean([s.j for s in self.scores.values()]))
        f = float(np.mean([s.f for s in self.scores.values()]))
        return {"J": j, "F": f, "J&F": (j + f) / 2}


@dataclass
class EvalResult:
    """All videos' results; `summary()` has the dataset means."""

    videos: list[VideoResult] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        summary = summarize({v.name: v.scores for v in self.videos})
        frames = sum(v.stats.num_frames for v in self.videos)
        summary["lvlm_calls"] = float(sum(v.stats.lvlm_calls for v in self.videos))
        summary["lvlm_calls_per_frame"] = summary["lvlm_calls"] / max(frames, 1)
        return summary


def evaluate_video(propagator: SeCPropagator, video: Video) -> VideoResult:
    """Propagates one video and scores it on its annotated frames."""
    stats = PropagationStats()
    annotated = sorted(video.annotations)
    predicted = {}
    for t, _, labels in propagator.run(video, stats):
        if t in video.annotations:
            predicted[t] = labels
    gt = np.stack([video.labels(t) for t in annotated])
    pred = np.stack([predicted[t] for t in annotated])
    # every annotated object was prompted on its first annotated frame, so all of them are scored
    object_ids = [int(i) for i in np.unique(gt) if i != 0]
    return VideoResult(video.name, score_video(gt, pred, object_ids), stats)


def evaluate_videos(
    propagator: SeCPropagator,
    videos: Iterable[Video],
    max_videos: int | None = None,
) -> EvalResult:
    """Evaluates the videos in order (the first `max_videos` of them), with a progress bar."""
    result = EvalResult()
    videos = itertools.islice(videos, max_videos)
    for video in tqdm(videos, total=max_videos, desc="eval", unit="video"):
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
