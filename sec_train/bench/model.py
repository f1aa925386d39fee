"""`python -m sec_train.bench model [--device cpu|cuda] [--recipe R ...] [--zero 2 3] [--layers N]
[--batch B] [--json] [key=value ...]`: the real recipes' training step at real widths (InternVL
2.5-4B + SAM 2.1-L, 22-slot memory) with random weights, through the framework's own `Trainer`
and DeepSpeed (one process), on batches of the recipe's own sampler and collator (448 px LVLM
frames, 1024 px SAM 2 frames) over synthesized videos.

Each (recipe, ZeRO stage) runs in its own process, so each peak is its own. Per run it reports:
the step time (median), LLM tokens/s, the trainable parameters by group, memory by component
(weights, gradients and optimizer state as DeepSpeed holds them, activations as the bytes autograd
saves), the peak RSS (CPU) or peak allocated memory (CUDA) above the process's baseline, the
step's FLOPs (torch's FlopCounterMode) and their rate as a fraction of the device's own bf16
matmul FLOP/s measured in the same process ("mfu"), and the planner's prediction for the same
shape (`sec-train plan`). `--layers N` truncates the LLM, ViT and Hiera stage-3 depth (see
`sec_train.bench.real_model`); the result says which depth ran.

On CPU set DS_ACCELERATOR=cpu. A real-size step there takes minutes and ~10-15 GB of memory.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from data_tools.synth import synthesize
from sec_train.bench.measure import (
    PeakRSS,
    count_flops,
    malloc_in_use,
    matmul_flops_per_s,
    rss_bytes,
    saved_activations,
)
from sec_train.model.real import Depth, random_real_model
from sec_train.train.accel import resolve_precision
from sec_train.train.config import TrainConfig, load_config
from sec_train.train.loop import Trainer, build_train_loader
from sec_train.train.plan import GIB, Shape, model_counts, plan_memory, trainable_groups
from sec_train.types import Batch, Stage2Batch

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = ("sec_stage1", "sec_stage2", "sec_joint")


def _single_process_env() -> None:
    """A one-process group for DeepSpeed when not started by a launcher."""
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", "29517")


def recipe_config(recipe: str, zero: int, batch: int, steps: int, overrides: list[str]) -> TrainConfig:
    """The recipe with DeepSpeed ZeRO-`zero`, `batch` samples per step, no accumulation, in the
    precision it trains in on a GPU (on CPU too, so the sizes are the GPU's)."""
    cfg = load_config(
        str(CONFIGS / f"{recipe}.yaml"),
        [
            f"deepspeed={CONFIGS / 'deepspeed' / f'zero{zero}.json'}",
            f"batch_size={batch}",
            "grad_accum=1",
            "wandb.mode=disabled",
            "model.init=null",
            "data.train=[]",  # the trainer steps the batches given to it; they come from synthesized videos
            "data.stage2.obj_list=null",
            f"max_steps={steps}",
            *overrides,
        ],
    )
    cfg.precision = resolve_precision(cfg, cuda=True)
    return cfg


def real_batches(cfg: TrainConfig, model, count: int, device: str) -> list[Batch]:
    """`count` batches of the recipe's loader over synthesized videos, at the model's sizes."""
    with tempfile.TemporaryDirectory() as tmp:
        s1, s2 = cfg.data.stage1, cfg.data.stage2
        frames = s1.num_frames * s1.stride if cfg.model.mode == "stage1" else s2.max_context + 1
        synthesize(tmp, 2, frames=frames + 2, height=360, width=640, objects=3)
        data = dataclasses.replace(
            cfg.data, train=[str(Path(tmp) / "shards")], num_workers=0, shuffle_buffer=4
        )
        loader = build_train_loader(dataclasses.replace(cfg, data=data), model)
        return [batch.to(device) for _, batch in zip(range(count), loader)]


def batch_shape(batch: Batch) -> Shape:
    """What the planner needs of a batch: samples, LLM tokens, LVLM and SAM 2 frames."""
    if isinstance(batch, Stage2Batch):
        return Shape(
            samples=batch.num_samples,
            llm_tokens=int(batch.input_ids.numel()),
            lvlm_frames=int(batch.lvlm_images.shape[0]),
            sam_frames=int(batch.sam_images.shape[0]),
        )
    clips, frames, objects = batch.masks.shape[:3]
    return Shape(samples=clips, sam_frames=clips * frames, objects=objects)


def activation_groups(model) -> dict[str, list[torch.nn.Module]]:
    """The parts the planner sizes activations by: LLM layers (per token and layer), the ViT
    (per frame), the rest of the LVLM (per token), SAM 2 and SeC's heads ("other")."""
    language = model.lvlm.model.language_model
    return {
        "llm_layers": list(language.layers),
        "vit": [model.lvlm.model.vision_tower],
        "lvlm_other": [model.lvlm],
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def held_bytes(trainer: Trainer) -> dict[str, int]:
    """Weights, gradients and optimizer state as this process's DeepSpeed engine holds them."""
    engine, optimizer = trainer.model, trainer.optimizer.optimizer
    params = list(engine.module.parameters())
    # ZeRO-3 keeps each weight's partition in `ds_tensor` (the parameter itself is emptied)
    weights = sum(getattr(p, "ds_tensor", p).numel() * p.element_size() for p in params)
    masters = (
        getattr(optimizer, "single_partition_of_fp32_groups", None) or optimizer.fp32_partitioned_groups_flat
    )
    state = [t for s in optimizer.optimizer.state.values() for t in s.values() if t.numel() > 1]
    grads = getattr(optimizer, "grad_partitions_flat_buffer", None)  # ZeRO-3's persistent gradients
    return {
        "weights": weights,
        "optimizer": sum(t.numel() * t.element_size() for t in [*masters, *state]),
        "gradients_persistent": 0 if grads is None else grads.numel() * grads.element_size(),
    }


def planned_memory(
    cfg: TrainConfig, shape: Shape, zero: int, depth: Depth, counts: dict, device: str
) -> dict | None:
    """The planner's bytes for this run on `device` (None, with a note, where it has no
    activation sizes)."""
    try:
        return plan_memory(cfg, shape, zero=zero, gpus=1, depth=depth, counts=counts, device=device)
    except ValueError as err:
        print(f"bench model: no plan: {err}", file=sys.stderr)
        return None


def timed_steps(
    trainer: Trainer, batch: Batch, steps: int, device: str, desc: str
) -> tuple[list, list, list]:
    """Wall times, CPU times (this process) and metrics of `steps` training steps on `batch`."""
    times, cpu_times, metrics = [], [], []
    for _ in tqdm(range(steps), desc=desc):
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics.append(trainer.train_step(batch))
        _sync(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times, metrics


def op_profile(top: int) -> tuple[torch.profiler.profile, Callable[[], list[dict]]]:
    """A CPU profiler and a function returning its `top` operators by self CPU time."""
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])

    def table() -> list[dict]:
        ops = sorted(profiler.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
        return [
            {"op": e.key, "calls": e.count, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3)} for e in ops
        ]

    return profiler, table


def run_one(recipe: str, zero: int, args: argparse.Namespace) -> dict:
    """One (recipe, ZeRO stage) in this process: warm-up step (counting FLOPs and saved
    activations), then `args.steps` timed steps on the same batch."""
    _single_process_env()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    cfg = recipe_config(recipe, zero, args.batch, args.steps + 1, args.overrides)
    depth = Depth.truncated(args.layers)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    peak_matmul = matmul_flops_per_s(torch.bfloat16, device)
    baseline, heap_baseline = rss_bytes(), malloc_in_use()
    with PeakRSS() as rss:
        model = random_real_model(cfg.model, depth, device, dtype)
        rss.phase("model")
        groups = trainable_groups(model)
        batch = real_batches(cfg, model, 1, device)[0]
        shape = batch_shape(batch)
        planned = planned_memory(cfg, shape, zero, depth, model_counts(model), device)
        trainer = Trainer(cfg, model=model)
        rss.phase("trainer")
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        first = []
        with saved_activations(model, activation_groups(model)) as saved:
            flops = count_flops(lambda: first.append(timed_steps(trainer, batch, 1, device, "warm-up")))
        rss.phase("first_step")
        profiler, profile_table = op_profile(args.profile)
        with profiler if args.profile else contextlib.nullcontext():
            times, cpu_times, metrics = timed_steps(
                trainer, batch, args.steps, device, f"{recipe} zero{zero}"
            )
        rss.phase("timed_steps")
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss.peak - baseline
    if not times:  # --steps 0: the warm-up step's times (FLOP counting and hooks slow it)
        times, cpu_times, _ = first[0]
    step_s, step_cpu_s = statistics.median(times), statistics.median(cpu_times)
    return {
        "recipe": recipe,
        "zero": zero,
        "overrides": args.overrides,
        "device": device,
        "depth": dataclasses.asdict(depth),
        "real_depth": depth.is_real,
        "batch": dataclasses.asdict(shape),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "losses": [None if m is None else round(m["loss"], 4) for m in first[0][2] + metrics],
        "step_timed": "timed steps" if args.steps else "warm-up step",
        "step_s": step_s,
        "tokens_per_s": shape.llm_tokens / step_s,
        "samples_per_s": shape.samples / step_s,
        "trainable": groups,
        "trainable_total": sum(groups.values()),
        "memory_gib": {
            "held": {k: v / GIB for k, v in held_bytes(trainer).items()},
            "activations_saved": {k: v / GIB for k, v in saved.items()},
            "peak": peak / GIB,
            # CPU: the peak RSS of each phase (model built, DeepSpeed set up, first step, the rest)
            "phases": {k: (v - baseline) / GIB for k, v in rss.phases.items()},
            # CPU under glibc: the same, of the bytes malloc had handed out and not had back (live
            # allocations, without the freed chunks malloc keeps and RSS counts)
            "heap_peak": None if heap_baseline is None else (rss.heap_peak - heap_baseline) / GIB,
            "heap_phases": None
            if heap_baseline is None
            else {k: (v - heap_baseline) / GIB for k, v in rss.heap_phases.items()},
            "peak_what": "max_memory_allocated"
            if device == "cuda"
            else "peak RSS minus the RSS before the model",
            "planned": planned and {k: v / GIB for k, v in planned.items()},
        },
        "planned_over_peak": planned and planned["total"] / peak,
        "step_flops": flops,
        "step_cpu_s": step_cpu_s,
        "achieved_flops_per_s": flops / step_s,
        "matmul_bf16_flops_per_s": peak_matmul["wall"],
        "mfu": flops / step_s / peak_matmul["wall"],
        # per CPU-second of this process: what load from other jobs on a shared CPU cannot distort
        "mfu_cpu_time": flops / step_cpu_s / peak_matmul["cpu"] if device == "cpu" else None,
        "profile": profile_table() if args.profile else None,
    }


def summary_line(result: dict) -> str:
    """One line of a run's figures: what `launch/gpu_check.sh` prints for README's GPU rows."""
    memory, planned = result["memory_gib"], result["memory_gib"]["planned"]
    depth = "real depth" if result["real_depth"] else f"{result['depth']['llm']} layers"
    return (
        f"{result['recipe']:<11} zero{result['zero']}  {depth}  batch {result['batch']['samples']}  "
        f"step {result['step_s']:.2f} s  {result['tokens_per_s']:.0f} tokens/s  "
        f"MFU {result['mfu']:.3f} of measured bf16 matmul  peak {memory['peak']:.2f} GiB "
        f"(planned {'-' if planned is None else format(planned['total'], '.2f')})  losses {result['losses']}"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sec_train.bench model", description=__doc__)
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--recipe", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--zero", nargs="+", type=int, choices=(2, 3), default=[2, 3])
    parser.add_argument(
        "--layers", type=int, help="truncate LLM / ViT / Hiera stage-3 depth to N (default: real)"
    )
    parser.add_argument("--batch", type=int, default=1, help="samples per step")
    parser.add_argument(
        "--steps", type=int, default=2, help="timed steps after the warm-up step (0: time the warm-up step)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line per run, then a summary line"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="report the timed steps' top N operators"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="load the runs' recipes, print them as JSON lines, run nothing"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    return parser.parse_args(argv)


def _child(recipe: str, zero: int, argv: list[str]) -> dict:
    """Runs one (recipe, zero) in a fresh process and returns its result."""
    cmd = [
        sys.executable,
        "-m",
        "sec_train.bench",
        "model",
        "--recipe",
        recipe,
        "--zero",
        str(zero),
        "--json",
        *argv,
    ]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _strip_runs(argv: list[str]) -> list[str]:
    """argv without --recipe/--zero/--json (the parent passes one of each to a child)."""
    out, skip = [], False
    for token in argv:
        if token in ("--recipe", "--zero"):
            skip = True
        elif token.startswith("--") or "=" in token:
            skip = False
        if not skip and token != "--json":
            out.append(token)
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    runs = [(r, z) for r in args.recipe for z in args.zero]
    if args.dry_run:
        for recipe, zero in runs:
            cfg = recipe_config(recipe, zero, args.batch, args.steps + 1, args.overrides)
            plan = {"recipe": recipe, "zero": zero, "device": args.device, "layers": args.layers}
            print(json.dumps({**plan, "batch": cfg.batch_size, "precision": cfg.precision, "dry_run": True}))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench model: no CUDA device here; run with --device cpu (and DS_ACCELERATOR=cpu)")
        return 0
    if len(runs) == 1:
        results = [run_one(*runs[0], args)]
    else:
        results = [_child(r, z, _strip_runs(argv)) for r, z in runs]
    for result in results:
        print(json.dumps(result) if args.json else json.dumps(result, indent=1))
        print(summary_line(result), file=sys.stderr)
    return 0
