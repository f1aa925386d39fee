"""The demo's picture: one held-out video across its scene cut, SAM 2 only (top row) above SeC
(bottom row), the predicted mask overlaid on each frame, frames side by side and upscaled. With
`--results` (`demo_table.py`'s JSON) the video is the one where SeC's post-cut J gains most over
SAM 2 only's there, so the picture shows the difference the table measures; `--video N` shows
the N-th instead.

    python launch/demo_strip.py --data runs/demo/data/val/shards --trained runs/demo/stage2 \
        --results runs/demo/results.json --out runs/demo/strip.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sec_train.eval.datasets import open_videos
from sec_train.infer.overlay import overlay
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.infer.runtime import load_model
from sec_train.infer.video import Video
from sec_train.model.sec import SeCModel

LABEL_HEIGHT = 28
GAP = 4


def frames_around_cut(video: Video, before: int, after: int) -> list[int]:
    """Positions from `before` frames before the video's first cut to `after` frames after it."""
    if not video.scene_cuts:
        raise ValueError(f"{video.name} has no scene cut recorded (shards of `sec-data synth` have)")
    cut = video.scene_cuts[0]
    return list(range(max(cut - before, 0), min(cut + after + 1, len(video))))


def overlays(model: SeCModel, video: Video, use_concept: bool, frames: list[int]) -> list[np.ndarray]:
    """The overlay of the propagated masks on `frames` (object 1 in the DAVIS palette's red)."""
    propagator = SeCPropagator(model, PropagationConfig(use_concept=use_concept))
    with torch.no_grad():
        return [overlay(frame, labels) for t, frame, labels in propagator.run(video) if t in frames]


def largest_gain(post_cut_j: dict[str, dict[str, float]]) -> str:
    """The video whose post-cut J gains most from SeC's concept guidance over SAM 2 only, by the
    table's per-video scores (`demo_table.py`'s `"post_cut_j"`)."""
    sam2, sec = post_cut_j["sam2_only"], post_cut_j["sec"]
    return max(sec, key=lambda name: sec[name] - sam2[name])


def draw_strip(rows: dict[str, list[np.ndarray]], frames: list[int], cut: int, scale: int) -> Image.Image:
    """One row per entry of `rows` (its name above it), frames side by side, `scale` times
    upscaled; the frame numbers label the columns and a white bar marks the cut."""
    h, w = (side * scale for side in rows[next(iter(rows))][0].shape[:2])
    width = len(frames) * (w + GAP) - GAP
    strip = Image.new("RGB", (width, len(rows) * (LABEL_HEIGHT + h + GAP)), "black")
    pen = ImageDraw.Draw(strip)
    for r, (name, images) in enumerate(rows.items()):
        top = r * (LABEL_HEIGHT + h + GAP)
        pen.text((4, top + 8), name, fill="white")
        for c, (t, image) in enumerate(zip(frames, images)):
            left = c * (w + GAP)
            strip.paste(Image.fromarray(image).resize((w, h), Image.NEAREST), (left, top + LABEL_HEIGHT))
            pen.text((left + w - 70, top + 8), f"frame {t}" + (" (cut)" if t == cut else ""), fill="white")
            if t == cut:
                bottom = top + LABEL_HEIGHT + h
                pen.rectangle((left - GAP, top + LABEL_HEIGHT, left - 1, bottom), fill="white")
    return strip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="held-out shard dir (its headers hold the cuts)")
    parser.add_argument("--trained", required=True, help="a training run, checkpoint or model dir")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--results", help="demo_table.py's --json: shows the video SeC helps most")
    parser.add_argument("--video", type=int, help="which video of --data (0 = the first) instead")
    parser.add_argument("--before", type=int, default=2, help="frames shown before the cut")
    parser.add_argument("--after", type=int, default=4, help="frames shown after the cut")
    parser.add_argument("--scale", type=int, default=3, help="upscaling factor")
    args = parser.parse_args(argv)
    model = load_model(args.trained, torch.device("cpu"))
    if args.video is not None:
        video = next(itertools.islice(open_videos(args.data), args.video, None), None)
    elif args.results:
        name = largest_gain(json.loads(Path(args.results).read_text())["trained"]["post_cut_j"])
        video = next((v for v in open_videos(args.data) if v.name == name), None)
    else:
        raise SystemExit("give --results (demo_table.py's --json) or --video")
    if video is None:
        raise SystemExit(f"{args.data} has no video {args.video if args.video is not None else name}")
    frames = frames_around_cut(video, args.before, args.after)
    rows = {
        "SAM 2 only": overlays(model, video, False, frames),
        "SeC (concept guidance)": overlays(model, video, True, frames),
    }
    draw_strip(rows, frames, video.scene_cuts[0], args.scale).save(args.out)
    print(f"{args.out}: {video.name}, frames {frames[0]}..{frames[-1]}, cut at {video.scene_cuts[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
