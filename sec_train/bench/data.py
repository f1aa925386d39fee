"""`python -m sec_train.bench data [--json]`: stage-2 samples/s of the shard loader against the
per-sample work of the original code, on an SA-V-style synthetic set, in one process.

- (a) `loader`: `build_loader` in concept_only mode, no worker processes, batch size 1;
- (b) `baseline`: per sample, decode the whole mp4 and every RLE of the video (as the original
  does), then build the same example from the decoded arrays;
- (c) `jpeg_bound`: decode just the JPEG frames a sample uses (references and target).

Targets: loader / baseline >= 20 and loader / jpeg_bound >= 0.5. The rates and ratios come last,
as JSON with --json.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_tools.convert_sav import load_sav_video, sav_jobs
from data_tools.pipeline import convert_videos
from data_tools.synth import render_video, write_sav
from data_tools.video import read_frames
from sec_train.data.config import DataConfig
from sec_train.data.draw import draw_contour
from sec_train.data.format import decode_record, iter_records, read_index, rle_to_mask
from sec_train.data.images import resize_image, resize_mask
from sec_train.data.loader import build_loader
from sec_train.data.prompts import training_prompt
from sec_train.data.stage2 import Stage2Sampler
from sec_train.model.tokenizer import build_toy_tokenizer


def build_set(root: Path, videos: int, frames: int, scale: int) -> tuple[Path, Path]:
    """SA-V-style videos (320x180 rendered, upsampled by `scale`) and their shards; a set
    already built in `root` is reused."""
    sav, shards = root / "sav", root / "shards"
    if (shards / "index.json").is_file():
        return sav, shards
    for i in range(videos):
        write_sav(render_video(f"sav_{i:06d}", i, frames=frames, height=180, width=320), sav, scale=scale)
    convert_videos(sav_jobs(sav, sav), load_sav_video, shards, prefix="sav", workers=1)
    return sav, shards


def _units(shards: Path) -> list:
    samples = [
        decode_record(r, i["name"])
        for i in read_index(shards)["shards"]
        for r in iter_records(shards / i["name"])
    ]
    return [(s, obj) for s in samples for obj in s.header["object_ids"]]


def loader_samples(cfg: DataConfig, sizes: dict, tokenizer) -> Iterator[None]:
    """(a): one step per sample of the shard loader, epoch after epoch."""
    loader = build_loader(cfg, mode="concept_only", tokenizer=tokenizer, batch_size=1, **sizes)
    while True:
        for _ in loader:
            yield


def _baseline_example(
    frames: list, masks: list, header: dict, obj: int, sampler: Stage2Sampler, n: int
) -> None:
    """The stage-2 example built from a fully decoded video, as the original code does."""
    plan = sampler.plan(header, obj, np.random.default_rng(n))
    h, w = header["height"], header["width"]

    def frame(p: int, size: int) -> np.ndarray:
        return resize_image(Image.fromarray(frames[header["frame_indices"][p]]), size)

    def mask(p: int, o: int, size: int | None) -> np.ndarray:
        m = masks[p][header["object_ids"].index(o)]
        m = np.zeros((h, w), bool) if m is None else m
        return m if size is None else resize_mask(m, size)

    lvlm = [  # outlined at the frame's resolution, then resized (as the official does)
        resize_image(draw_contour(frames[header["frame_indices"][p]], mask(p, o, None)), sampler.lvlm_size)
        for p, o in zip(plan.refs, plan.outlined)
    ]
    lvlm.append(frame(plan.target, sampler.lvlm_size))
    torch.from_numpy(np.stack(lvlm)).permute(0, 3, 1, 2).contiguous()
    torch.from_numpy(frame(plan.target, sampler.sam_size)).permute(2, 0, 1).contiguous()
    torch.from_numpy(mask(plan.target, obj, sampler.sam_size))
    training_prompt(sampler.tokenizer, len(lvlm), sampler.num_image_tokens, np.random.default_rng(n))


def baseline_samples(units: list, sav: Path, sampler: Stage2Sampler) -> Iterator[None]:
    """(b): per sample, the whole mp4 and every RLE of the video decoded, then the example."""
    for n in itertools.count():
        sample, obj = units[n % len(units)]
        header, (h, w) = sample.header, (sample.header["height"], sample.header["width"])
        frames = [
            f for _, f in read_frames(sav / f"{header['video']}.mp4", range(header["frame_indices"][-1] + 1))
        ]
        masks = [[None if r is None else rle_to_mask(r, h, w) for r in row] for row in sample.masks]
        _baseline_example(frames, masks, header, obj, sampler, n)
        yield


def jpeg_bound_samples(units: list, sampler: Stage2Sampler) -> Iterator[None]:
    """(c): per sample, just the JPEGs of its references and target decoded."""
    for n in itertools.count():
        sample, obj = units[n % len(units)]
        plan = sampler.plan(sample.header, obj, np.random.default_rng(n))
        for p in [*plan.refs, plan.target]:
            Image.open(io.BytesIO(sample.frames[p])).convert("RGB")
        yield


def rate(samples: Iterator[None], count: int) -> float:
    """Samples per second over the next `count` samples."""
    start = time.perf_counter()
    for _ in itertools.islice(samples, count):
        pass
    return count / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    """Builds the set, measures (a), (b), (c) and prints them with the two ratios."""
    parser = argparse.ArgumentParser(prog="python -m sec_train.bench data", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--data", help="keep (and reuse) the built set in this folder")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=336, help="video frames (SA-V: ~14 s at 24 fps)")
    parser.add_argument(
        "--scale", type=int, default=6, help="upsampling of 320x180 (6: 1920x1080, like SA-V)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    parser.add_argument("--samples", type=int, default=8, help="samples per round of (a) and (c)")
    parser.add_argument("--baseline-samples", type=int, default=1, help="samples per round of (b)")
    parser.add_argument("--lvlm-size", type=int, default=448)
    parser.add_argument("--sam-size", type=int, default=1024)
    parser.add_argument("--image-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker: the data path is single-threaded
    sizes = dict(
        lvlm_image_size=args.lvlm_size, sam_image_size=args.sam_size, num_image_tokens=args.image_tokens
    )
    tokenizer = build_toy_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        sav, shards = build_set(Path(args.data or tmp), args.videos, args.frames, args.scale)
        cfg = DataConfig(train=[str(shards)], num_workers=0, shuffle_buffer=8)
        sampler = Stage2Sampler(cfg.stage2, mode="concept_only", tokenizer=tokenizer, **sizes)
        units = _units(shards)
        streams = {
            "loader": (loader_samples(cfg, sizes, tokenizer), args.samples),
            "baseline": (baseline_samples(units, sav, sampler), args.baseline_samples),
            "jpeg_bound": (jpeg_bound_samples(units, sampler), args.samples),
        }
        next(streams["loader"][0])  # the loader's start-up (first shuffle-buffer fill) is not timed
        # Interleaved rounds: load from other processes drifts over minutes, so each ratio is
        # taken within a round (measurements seconds apart) and the median over rounds reported.
        rounds = [{k: rate(it, n) for k, (it, n) in streams.items()} for _ in range(args.rounds)]
    median = lambda f: statistics.median(f(r) for r in rounds)
    result = {
        "samples_per_s": {k: round(median(lambda r, k=k: r[k]), 2) for k in streams},
        "loader_over_baseline": round(median(lambda r: r["loader"] / r["baseline"]), 2),
        "loader_over_jpeg_bound": round(median(lambda r: r["loader"] / r["jpeg_bound"]), 3),
        "targets": {"loader_over_baseline": 20, "loader_over_jpeg_bound": 0.5},
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0
