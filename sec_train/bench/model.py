"""`python -m sec_train.bench model --dims real --zero 2|3 [--json]`: training throughput of a
random-weight SeC at real dimensions (InternVL 2.5-4B + SAM 2.1-L) on one CUDA GPU under
DeepSpeed ZeRO-2 or ZeRO-3, through the framework's own training step.

Reports tokens/s (LLM tokens), samples/s, an MFU estimate (see `sec_train.train.run_log`) and
the peak memory of the GPU. Batches come from the real data path (synthesized videos, the
recipe's sampler and collator at 448 / 1024 px). Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data_tools.synth import synthesize
from sec_train.model.build import build_sec_model
from sec_train.model.sec import SeCModel
from sec_train.model.tokenizer import build_toy_tokenizer
from sec_train.model.trainable import apply_trainable
from sec_train.tokens import IMG_CONTEXT
from sec_train.train.config import TrainConfig, load_config
from sec_train.train.loop import Trainer
from sec_train.train.run_log import flops_per_token, peak_flops

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = {"real": CONFIGS / "sec_stage2.yaml", "toy": CONFIGS / "toy_stage2.yaml"}


def random_model(cfg: TrainConfig, dims: str) -> SeCModel:
    """SeC with random weights on the GPU: real shapes are built on the meta device, then
    materialised and initialised (normal 0.02 for matrices, ones/zeros for norms and biases)."""
    # the real recipe takes these from stage 1's checkpoint: InternVL 2.5-4B, SAM 2.1-L, 22 memories
    sources = (
        {"lvlm": "real", "sam2": "real", "num_maskmem": 22}
        if dims == "real"
        else {"lvlm": "toy", "sam2": "toy"}
    )
    model = build_sec_model(dataclasses.replace(cfg.model, init=None, **sources))
    if dims == "real":
        model.to_empty(device="cuda")
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.ndim >= 2:
                    param.normal_(0.0, 0.02)
                else:
                    param.fill_(1.0 if "norm" in name.lower() and name.endswith("weight") else 0.0)
        # the meta build has no tokenizer: the toy one has the same special tokens
        model.tokenizer = build_toy_tokenizer()
        model.lvlm.config.image_token_id = model.tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    apply_trainable(model, cfg.model.trainable)
    return model.cuda().train()


def _single_process_env() -> None:
    """A one-process group for DeepSpeed when not started by a launcher."""
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", "29517")


def measure(trainer: Trainer, batches: list, steps: int, warmup: int) -> dict[str, float]:
    """Median step time over `steps` after `warmup`, and the rates it implies."""
    times, tokens, samples = [], [], []
    for i in tqdm(range(warmup + steps), desc="bench model"):
        batch = batches[i % len(batches)]
        torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train_step(batch)
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            tokens.append(int(batch.attention_mask.sum()))
            samples.append(batch.num_samples)
    step_s = statistics.median(times)
    result = {
        "step_s": step_s,
        "samples_per_s": statistics.mean(samples) / step_s,
        "tokens_per_s": statistics.mean(tokens) / step_s,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    peak = peak_flops(torch.device("cuda"))
    if peak:
        result["mfu"] = result["tokens_per_s"] * flops_per_token(trainer.unwrapped) / peak
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sec_train.bench model", description=__doc__)
    parser.add_argument("--dims", choices=sorted(RECIPES), default="real")
    parser.add_argument("--zero", type=int, choices=(2, 3), default=2)
    parser.add_argument("--batch", type=int, default=2, help="samples per step")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench model: no CUDA device here; it measures GPU training throughput, skipping")
        return 0
    _single_process_env()
    cfg = load_config(
        str(RECIPES[args.dims]),
        [
            f"deepspeed={CONFIGS / 'deepspeed' / f'zero{args.zero}.json'}",
            f"batch_size={args.batch}",
            "grad_accum=1",
            "wandb.mode=disabled",
            f"max_steps={args.warmup + args.steps}",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(tmp, 4, frames=24, height=360, width=640, objects=3)
        data = dataclasses.replace(cfg.data, train=[str(Path(tmp) / "shards")], num_workers=2)
        cfg = dataclasses.replace(cfg, data=data)
        trainer = Trainer(cfg, model=random_model(cfg, args.dims))
        batches = [batch.to("cuda") for _, batch in zip(range(4), trainer.loader)]
    result = {
        "dims": args.dims,
        "zero": args.zero,
        "batch": args.batch,
        **measure(trainer, batches, args.steps, args.warmup),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
