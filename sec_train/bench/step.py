"""`python -m sec_train.bench step [--json] [--config RECIPE] [key=value ...]`: the framework's
training step against a bare PyTorch loop, in one process.

Both train the same toy model (two copies of one initialisation) on the same batch with the same
AdamW groups, schedule and clipping; the bare loop is forward, backward, clip, step, zero_grad
with no logging. Steps alternate between the two so machine load hits both alike. Each loop's
time is its fastest step (on a shared machine, slower steps measure the neighbours), the
medians are shown too; the ratio of the fastest steps (target <= 1.10) comes last, as JSON with
--json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data_tools.synth import synthesize
from sec_train.model.build import build_trainable_model
from sec_train.train.config import TrainConfig, load_config
from sec_train.train.loop import Trainer
from sec_train.train.optim import build_optimizer, build_scheduler
from sec_train.types import Batch

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "toy_stage2.yaml"


def with_synthetic_data(cfg: TrainConfig, directory: str) -> TrainConfig:
    """`cfg` training on a few videos synthesized into `directory`."""
    synthesize(directory, 2, frames=8, height=64, width=64, objects=2)
    data = dataclasses.replace(cfg.data, train=[str(Path(directory) / "shards")], num_workers=0)
    return dataclasses.replace(cfg, data=data)


class BareLoop:
    """The reference: what a hand-written PyTorch training step does, nothing more."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig):
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.max_steps)
        self.clip = cfg.optim.grad_clip

    def step(self, batch: Batch) -> float:
        loss = self.model(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def _timed(fn, batch: Batch) -> float:
    start = time.perf_counter()
    fn(batch)
    return time.perf_counter() - start


def toy_bench_args(
    argv: list[str], name: str, doc: str | None, recipe: Path, steps: int, warmup: int, *fixed: str
) -> tuple[argparse.Namespace, TrainConfig]:
    """A toy bench's arguments (--json, --config, --steps, --warmup, key=value overrides) and its
    recipe with them, wandb off, no accumulation and the `fixed` overrides."""
    parser = argparse.ArgumentParser(prog=f"python -m sec_train.bench {name}", description=doc)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--config", default=str(recipe), help="recipe of the model and batch (a toy one)")
    parser.add_argument("--steps", type=int, default=steps, help="measured steps of each side")
    parser.add_argument("--warmup", type=int, default=warmup, help="unmeasured steps of each side first")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, "wandb.mode=disabled", "grad_accum=1", *fixed]
    return args, load_config(args.config, overrides)


def main(argv: list[str]) -> int:
    args, cfg = toy_bench_args(argv, "step", __doc__, RECIPE, 20, 3)
    cfg.max_steps = max(cfg.max_steps, args.warmup + args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_synthetic_data(cfg, tmp)
        model = build_trainable_model(cfg.model)
        bare = BareLoop(copy.deepcopy(model), cfg)
        trainer = Trainer(cfg, model=model)
        batch = next(iter(trainer.loader))
    times: dict[str, list[float]] = {"framework": [], "bare": []}
    for i in tqdm(range(args.warmup + args.steps), desc="bench step"):
        pair = [("framework", trainer.train_step), ("bare", bare.step)]
        for name, fn in pair if i % 2 else reversed(pair):  # neither always runs first
            elapsed = _timed(fn, batch)
            if i >= args.warmup:
                times[name].append(elapsed)
    result = {f"{name}_median_step_s": statistics.median(t) for name, t in times.items()}
    framework, baseline = min(times["framework"]), min(times["bare"])
    result.update(framework_step_s=framework, bare_step_s=baseline, ratio=framework / baseline)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v:.4f}" for k, v in result.items()))
    return 0
