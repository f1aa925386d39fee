"""`sec-train eval`: J, F and J&F of a SeC model on DAVIS-style folders or shards.

    sec-train eval --checkpoint DIR --data DAVIS_ROOT_OR_SHARD_DIR [--subset val] [--sam2-only] [--json]

Each video is propagated from each object's first annotation (SeC, or plain SAM 2 with
`--sam2-only`) and scored on its annotated frames with the DAVIS semi-supervised protocol.
`evaluate_model` is the same evaluation for the trainer's periodic validation. As SeC's VOS
inference script by default, holes are not filled (`--fill-hole-area 8` is the predictor's
post-processing) and an overlap goes to the highest logit.
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
from sec_train.eval.metrics import ObjectScore, score_video, summarize
from sec_train.infer.overlay import save_palette_png
from sec_train.infer.propagate import PropagationConfig, PropagationStats, SeCPropagator
from sec_train.infer.runtime import (
    add_model_arguments,
    autocast,
    load_model,
    propagation_config,
    resolve_device,
)
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


def evaluate_video(propagator: SeCPropagator, video: Video, save_dir: Path | None = None) -> VideoResult:
    """Propagates one video and scores it on its annotated frames; optionally saves the masks."""
    stats = PropagationStats()
    annotated = sorted(video.annotations)
    predicted = {}
    for t, _, labels in propagator.run(video, stats):
        if t in video.annotations:
            predicted[t] = labels
        if save_dir is not None:
            (save_dir / video.name).mkdir(parents=True, exist_ok=True)
            save_palette_png(labels, save_dir / video.name / f"{video.frame_name(t)}.png")
    gt = np.stack([video.labels(t) for t in annotated])
    pred = np.stack([predicted[t] for t in annotated])
    # every annotated object was prompted on its first annotated frame, so all of them are scored
    object_ids = [int(i) for i in np.unique(gt) if i != 0]
    return VideoResult(video.name, score_video(gt, pred, object_ids), stats)


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
        config = PropagationConfig(use_concept=use_concept, fill_hole_area=EVAL_FILL_HOLE_AREA)
        propagator = SeCPropagator(model, config)
        return evaluate_videos(propagator, open_videos(data), max_videos).summary()
    finally:
        model.train(was_training)


def format_table(result: EvalResult) -> str:
    """Per-video and mean J, F, J&F as a fixed-width table."""
    width = max(12, *(len(v.name) for v in result.videos))
    lines = [f"{'video':<{width}} {'objects':>7} {'J':>7} {'F':>7} {'J&F':>7} {'LVLM':>5}"]
    for v in result.videos:
        m = v.means()
        lines.append(
            f"{v.name:<{width}} {len(v.scores):>7} {m['J']:>7.4f} {m['F']:>7.4f} {m['J&F']:>7.4f} "
            f"{v.stats.lvlm_calls:>5}"
        )
    s = result.summary()
    lines.append(
        f"{'mean':<{width}} {int(s['num_objects']):>7} {s['J']:>7.4f} {s['F']:>7.4f} {s['J&F']:>7.4f} "
        f"{int(s['lvlm_calls']):>5}"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sec-train eval", description=__doc__.split("\n")[0])
    add_model_arguments(parser, fill_hole_area=EVAL_FILL_HOLE_AREA)
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
                "lvlm_calls": v.stats.lvlm_calls,
                "objects": {o: s.as_dict() for o, s in v.scores.items()},
            }
            for v in result.videos
        }
        print(json.dumps({"videos": per_video, "mean": result.summary()}, indent=2))
    else:
        print(format_table(result))
    return 0
