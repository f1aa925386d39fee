"""`python -m sec_train.bench stage2 [--json] [--config RECIPE] [key=value ...]`: stage 2's step
with a batch's samples tracked together against one tracking state per sample, in one process.

Stage 2 predicts each sample's target frame: in concept-only mode from the target frame alone, in
fused mode after tracking the sample's clip from a GT prompt. `target_outputs` tracks the batch's
samples as the objects of one state (fused: one state per clip length); the baseline is the rule
before it, one state per sample, as `tests/test_sec_model.py` checks they give the same outputs.
Both time the same model's forward and backward on the same batch of the recipe's own sampler
(concept-cut synthetic videos), alternating; the medians and their ratio (baseline / together)
are printed, as JSON with --json.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data_tools.synth import synthesize
from sec_train.bench.step import toy_bench_args
from sec_train.model.build import build_trainable_model
from sec_train.model.sam2 import normalize_images
from sec_train.model.sec import SeCModel
from sec_train.model.tracker import FrameOutput, Sam2Tracker
from sec_train.train.loop import build_train_loader
from sec_train.types import Stage2Batch

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "toy_concept_only.yaml"


def one_state_per_sample(
    tracker: Sam2Tracker, images_norm: torch.Tensor, batch: Stage2Batch, concept: torch.Tensor, mode: str
) -> FrameOutput:
    """`target_outputs` sample by sample: each sample's clip in its own tracking state."""
    outputs, start = [], 0
    for b, length in enumerate(batch.sam_frames_per_sample.tolist()):
        features = tracker.encode_frames(images_norm[start : start + length])
        masks, last = batch.sam_masks[start : start + length], length - 1
        state = tracker.init_state(1, length)
        if mode == "fused":
            tracker.track_frame(state, features.frame(0), 0, mask_prompt=masks[:1])
            for t in range(1, last):
                tracker.track_frame(state, features.frame(t), t)
        target, fused = features.frame(last), mode == "fused"
        out = tracker.track_frame(
            state, target, last, concept=concept[b : b + 1], use_memory=fused, update_memory=False
        )
        outputs.append(out)
        start += length
    return FrameOutput.cat(outputs)


def _one_state_per_sample_of(model: SeCModel):
    """`model._target_outputs` under the baseline rule."""

    def target_outputs(batch: Stage2Batch, concept: torch.Tensor) -> FrameOutput:
        images = normalize_images(batch.sam_images, model.compute_dtype(batch.sam_images.device))
        return one_state_per_sample(model.tracker, images, batch, concept, model.config.mode)

    return target_outputs


def _timed_step(model: SeCModel, batch: Stage2Batch, one_by_one: bool) -> float:
    """One forward and backward; `one_by_one` swaps the baseline rule in for this step."""
    if one_by_one:
        model._target_outputs = _one_state_per_sample_of(model)
    start = time.perf_counter()
    model(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    vars(model).pop("_target_outputs", None)
    return elapsed


def main(argv: list[str]) -> int:
    args, cfg = toy_bench_args(argv, "stage2", __doc__, RECIPE, 6, 1, "model.init=null")
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(tmp, 2 * cfg.batch_size, frames=12, height=96, width=128, objects=1, concept_cut=True)
        data = dataclasses.replace(cfg.data, train=[str(Path(tmp) / "shards")], num_workers=0)
        cfg = dataclasses.replace(cfg, data=data)
        model = build_trainable_model(cfg.model).train()
        batch = next(iter(build_train_loader(cfg, model)))
    times: dict[str, list[float]] = {"together": [], "one_by_one": []}
    for i in tqdm(range(args.warmup + args.steps), desc="bench stage2"):
        for name in ("together", "one_by_one") if i % 2 else ("one_by_one", "together"):
            elapsed = _timed_step(model, batch, one_by_one=name == "one_by_one")
            if i >= args.warmup:
                times[name].append(elapsed)
    result = {f"{name}_median_step_s": statistics.median(t) for name, t in times.items()}
    result.update(
        mode=cfg.model.mode,
        batch_size=batch.num_samples,
        speedup=result["one_by_one_median_step_s"] / result["together_median_step_s"],
    )
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
