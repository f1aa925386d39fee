"""The demo's results table: J&F overall and after the scene cut, J, F and LVLM calls of the
untrained toy SeC and a trained one, each with plain SAM 2 tracking and with SeC's concept
guidance, on the same held-out videos; `--ablation` adds the trained model with its concept
zeroed (SeC's path, but the LVLM's `[SEG]` carries nothing) and with `token_attn` untrained (as
stage 2 starts it: a copy of SAM 2's memory attention), to show where SeC's gain comes from.
Each model's row also gets `concept_only_iou`: mean IoU on the held-out first cut frames of the
mask SAM 2 draws from the concept alone, no memory (`sec_train.eval.concept`).

    python launch/demo_table.py --data runs/demo/data/val/shards --trained runs/demo/stage2 \
        --json runs/demo/results.json
    torchrun --standalone --nproc-per-node 2 launch/demo_table.py ...   (the videos split in two)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from sec_train.eval.concept import concept_only_ious
from sec_train.eval.datasets import open_videos
from sec_train.eval.distributed import Partition
from sec_train.eval.evaluate import EVAL_FILL_HOLE_AREA, EvalResult, VideoResult, evaluate_videos
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.infer.runtime import load_model
from sec_train.infer.video import Video
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.sec import SeCModel
from sec_train.model.tracker import FrameFeatures

COLUMNS = ("J&F", "J&F_post_cut", "J", "F")
TRACKING = {"sam2_only": ("SAM 2 only", False), "sec": ("SeC", True)}


@contextlib.contextmanager
def swapped_weights(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """Runs the block with `module` holding `state`, then puts its own weights back."""
    saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.load_state_dict(state)
    try:
        yield
    finally:
        module.load_state_dict(saved)


def zeroed_concept(model: SeCModel) -> contextlib.AbstractContextManager:
    """Makes every concept embedding exactly zero (the last `text_hidden_fcs` layer outputs 0)."""
    last = model.text_hidden_fcs[2]
    return swapped_weights(last, {k: torch.zeros_like(v) for k, v in last.state_dict().items()})


def untrained_token_attn(model: SeCModel) -> contextlib.AbstractContextManager:
    """`token_attn` as stage 2 starts it with the default `token_attn_init`: a copy of SAM 2's
    memory attention."""
    return swapped_weights(model.token_attn, model.sam2.memory_attention.state_dict())


# --ablation's rows: the trained model, SeC tracking, with part of its concept path undone
ABLATIONS = {
    "sec_zero_concept": ("SeC, concept zeroed", zeroed_concept),
    "sec_untrained_token_attn": ("SeC, token_attn untrained", untrained_token_attn),
}


def score(
    model: SeCModel,
    videos: list[Video],
    use_concept: bool,
    scene_changes: dict[str, list[int]],
    features: dict[tuple[str, int], FrameFeatures],
) -> list[VideoResult]:
    """This process's share of `videos`, tracked and scored (SAM 2 only or SeC). What a pass
    finds is kept for the next ones: each video's scene changes (in `scene_changes`, any model)
    and each frame's image features (in `features`, this model's: the ablations leave the
    image encoder as it is)."""
    config = PropagationConfig(use_concept=use_concept, fill_hole_area=EVAL_FILL_HOLE_AREA)
    propagator = SeCPropagator(model, config, scene_changes, features)
    with torch.no_grad():
        return evaluate_videos(propagator, videos, progress=first_process()).videos


def first_process() -> bool:
    """Whether this is the process that reports progress (rank 0, or the only one): the two
    processes share one terminal, where two progress bars would overwrite each other."""
    return Partition.from_env().rank == 0


def report(message: str) -> None:
    """`message` on stderr, from the first process only."""
    if first_process():
        print(message, file=sys.stderr)


def gathered(local: list) -> list:
    """Every process's `local` items, rank 0's first (one process: `local` itself)."""
    if not dist.is_initialized():
        return local
    parts: list[list] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, local)
    return [item for part in parts for item in part]


def post_cut_j(videos: list[VideoResult]) -> dict[str, float]:
    """`{video name: mean J of its objects at and after its first cut}` of the videos with a cut."""
    return {v.name: v.means()["J_post_cut"] for v in videos if v.cuts}


def score_all(models: dict[str, SeCModel], data: str, ablation: bool) -> dict[str, dict]:
    """`{model: {"sam2_only" | "sec" [| ABLATIONS]: scores, "concept_only_iou": IoU}}` over all
    videos of `data`, plus the trained model's post-cut J per video and tracking
    (`"post_cut_j"`, which `demo_strip.py` picks its video by). Under `torchrun` each process
    scores every `world_size`-th video and all of them get the gathered results."""
    partition = Partition.from_env()
    videos = [v for i, v in enumerate(open_videos(data)) if partition.owns(i)]
    results: dict[str, dict] = {}
    per_video: dict[str, list[VideoResult]] = {}
    scene_changes: dict[str, list[int]] = {}
    features: dict[str, dict] = {name: {} for name in models}
    for name, model in models.items():
        model.eval()
        for key, (tracking, use_concept) in TRACKING.items():
            report(f"--- {name}, {tracking}")
            per_video[f"{name}/{key}"] = gathered(
                score(model, videos, use_concept, scene_changes, features[name])
            )
            results.setdefault(name, {})[key] = EvalResult(per_video[f"{name}/{key}"]).summary()
        ious = gathered(list(concept_only_ious(model, [v for v in videos if v.scene_cuts]).values()))
        results[name]["concept_only_iou"] = float(np.mean(ious))
    for key, (tracking, undo) in ABLATIONS.items() if ablation else ():
        report(f"--- trained, {tracking}")
        with undo(models["trained"]):
            scored = gathered(score(models["trained"], videos, True, scene_changes, features["trained"]))
            results["trained"][key] = EvalResult(scored).summary()
    results["trained"]["post_cut_j"] = {key: post_cut_j(per_video[f"trained/{key}"]) for key in TRACKING}
    return results


def format_table(results: dict[str, dict]) -> str:
    """The results as a Markdown table, scores x100 (it reads as plain text too), then each
    model's concept-only IoU."""
    names = {k: v[0] for k, v in {**TRACKING, **ABLATIONS}.items()}
    lines = [
        "| model | tracking | J&F | J&F post-cut | J | F | LVLM calls |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model, rows in results.items():
        for key, row in rows.items():
            if key in ("concept_only_iou", "post_cut_j"):
                continue
            scores = " | ".join(f"{100 * row[c]:.1f}" if c in row else "-" for c in COLUMNS)
            lines.append(f"| {model} | {names[key]} | {scores} | {int(row['lvlm_calls'])} |")
    ious = ", ".join(f"{model} {100 * rows['concept_only_iou']:.1f}" for model, rows in results.items())
    lines.append(f"\nconcept-only IoU on the first cut frames (no memory) x100: {ious}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="held-out videos: DAVIS-style root or shard dir")
    parser.add_argument("--trained", required=True, help="a training run, checkpoint or model dir")
    parser.add_argument("--json", help="also write the results here (fractions in [0, 1])")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="add the trained model with its concept zeroed, and with token_attn untrained",
    )
    args = parser.parse_args(argv)
    partition = Partition.from_env()
    if partition.world_size > 1:  # under torchrun: the videos are split
        dist.init_process_group("gloo")
    trained = load_model(args.trained, torch.device("cpu"))
    models = {
        "untrained": build_sec_model(
            ModelConfig(mode=trained.config.mode, lvlm=trained.config.lvlm, sam2=trained.config.sam2)
        ),
        "trained": trained,
    }
    results = score_all(models, args.data, args.ablation)
    if dist.is_initialized():
        dist.destroy_process_group()
        if partition.rank != 0:
            return 0
    first = results["untrained"]["sam2_only"]
    counts = (int(first[k]) for k in ("num_videos", "num_objects", "num_cut_videos"))
    line = "\nheld-out videos {}: {} videos, {} objects, {} with a scene cut; scores x100"
    print(line.format(args.data, *counts))
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
