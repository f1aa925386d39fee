"""`sec-train plan --config RECIPE --gpus N --gpu-memory GB [--json]`: per-GPU memory of a real
recipe under DeepSpeed ZeRO-2 and ZeRO-3, and the largest per-GPU batch that fits.

The model of memory, per GPU (P = all parameters, T = trainable ones, N = GPUs):

- weights: P x w bytes (w = 2 in bf16, 4 with fp32 weights); ZeRO-3 keeps P x w / N;
- gradients: T x w / N (both stages partition them);
- optimizer state: T x 12 / N (fp32 master weights and Adam's two moments; DeepSpeed keeps its
  own fp32 partition even when the weights are fp32, as the stage-1 run measured);
- activations: what autograd keeps for backward, from bytes per unit measured by
  `python -m sec_train.bench model` (`LVLM_ACTIVATION_BYTES`, `SAM_ACTIVATION_BYTES`): per LLM
  token and layer, per LVLM frame and ViT layer, and SAM 2's per concept-only sample, per fused
  SAM 2 frame and object, per stage-1 tracked frame and object; a checkpointing setting not
  measured yet is reported as such, not guessed;
- workspace: the reduce (and ZeRO-3 prefetch) buckets DeepSpeed allocates; under ZeRO-3 the
  largest module's gathered weights (`gathered_bytes`); and the step's transient buffers
  (`transient_bytes`, measured as live bytes, so a GPU's allocator holds them too);
- on CPU only (`device="cpu"`, what `--check` replans CPU runs with): the freed memory glibc
  malloc keeps and RSS counts (`cpu_retained_bytes`, measured), not planned for a GPU.

Parameter counts come from the recipe itself (its trainable policy on SeC's real shapes, built
on the meta device), so a recipe that trains more plans more. The precision is the recipe's on
a GPU (`resolve_precision`: "auto" is bf16 weights for stage 2, fp32 weights under bf16
autocast for stage 1).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from sec_train.data.prompts import training_prompt
from sec_train.model.real import Depth, meta_real_model
from sec_train.model.tokenizer import build_toy_tokenizer
from sec_train.train.accel import resolve_precision
from sec_train.train.config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GIB = 2**30
ADAM_BYTES = 12  # fp32 master weight + exp_avg + exp_avg_sq per trainable parameter
IMAGE_TOKENS = 256  # per 448 px frame of InternVL 2.5 (1024 patches, pixel-shuffled by 0.5)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One micro-batch: samples, LLM tokens (padded), LVLM frames, SAM 2 frames, tracked objects."""

    samples: int
    llm_tokens: int = 0
    lvlm_frames: int = 0
    sam_frames: int = 0
    objects: int = 1

    def scaled(self, samples: int) -> Shape:
        """The same per-sample shape at `samples` samples."""
        k = samples / self.samples
        return Shape(
            samples,
            round(self.llm_tokens * k),
            round(self.lvlm_frames * k),
            round(self.sam_frames * k),
            self.objects,
        )


def trainable_groups(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters by group: LoRA, embeddings, then SeC's and SAM 2's modules."""
    groups: dict[str, int] = collections.Counter()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        if ".lora_" in name:
            key = "lora"
        elif "embed_tokens" in name or "lm_head" in name:
            key = "embeddings"
        elif parts[0] == "sam2":
            key = f"sam2.{parts[1]}"
        elif parts[0] == "lvlm":  # e.g. the projector (lvlm.model.multi_modal_projector)
            key = "lvlm." + ".".join(parts[1:3])
        else:
            key = parts[0]
        groups[key] += param.numel()
    return dict(groups)


def weight_bytes(cfg: TrainConfig) -> int:
    """Bytes per weight on a GPU: DeepSpeed keeps bf16 weights when the recipe trains in bf16,
    fp32 ones otherwise (fp32, or fp32 weights under bf16 autocast)."""
    return 2 if resolve_precision(cfg, cuda=True) == "bf16" else 4


def parameter_counts(cfg: TrainConfig, depth: Depth) -> dict[str, int]:
    """All and trainable parameters of the recipe's model at real widths and `depth`, the
    width DeepSpeed's buckets are sized by (`sec_train.train.accel`) and its largest module."""
    return model_counts(meta_real_model(cfg.model, depth))


def model_counts(model: torch.nn.Module) -> dict[str, int]:
    """All and trainable parameters of `model` (a `SeCModel`), its widest trainable matrix
    input, and the most parameters one module that its step runs owns ("largest")."""
    params = list(model.parameters())
    # stage 1 never runs the LVLM, so ZeRO-3 never gathers its modules (the LM head is the largest)
    runs = model.sam2 if model.config.mode == "stage1" else model
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "hidden": max((p.shape[-1] for p in params if p.requires_grad and p.ndim == 2), default=1024),
        "largest": max(sum(p.numel() for p in m.parameters(recurse=False)) for m in runs.modules()),
    }


# Activation bytes autograd keeps per unit, measured by `python -m sec_train.bench model --device
# cpu` under ZeRO-2 (its "activations_saved" divided by the batch's units; under ZeRO-3 they also
# count the gathered weights autograd holds, which `gathered_bytes` plans). The LVLM's depend on
# whether its layers are checkpointed: "llm_layers" per LLM token and layer, "vit" per LVLM frame
# and ViT layer, "lvlm_other" per LLM token (README's measured rows, 2 and 4 layers, batch 1 and 2).
LVLM_ACTIVATION_BYTES: dict[bool, dict[str, float]] = {
    True: {"llm_layers": 4096, "vit": 2_099_200, "lvlm_other": 0},
}
# SAM 2's and SeC's heads' ("other") per SAM 2 unit of the mode (`sam_units`), with the chunked
# attention of `sec_train.model.attention`:
#   concept_only: per sample (one target frame): sec_stage2, 1 sample (2 samples: 439,342,420 each)
#   fused: per SAM 2 frame and object: sec_joint, data.stage2.max_context=3 (4 frames, 1 object)
#   stage1: per tracked frame and object: sec_stage1, 8-frame clip, 1 object, 4 tracked frames
SAM_ACTIVATION_BYTES: dict[str, float] = {
    "concept_only": 443_095_366,
    "fused": 2_461_074_753 / 4,
    "stage1": 3_124_449_316 / 4,
}
# Transient bytes of a step beyond the saved activations and DeepSpeed's buffers, the live bytes a
# device's allocator must also hold at the step's peak. With the LVLM, per LLM token: what the
# ZeRO-2 CPU runs of tests/data/plan_runs.jsonl had handed out from malloc at their peak
# ("heap_peak", glibc's bytes in use, not RSS) less everything else planned, the constant whose
# largest |log(planned / measured)| over them is least (stage 2 at 2 / 4 / 6 layers and 2
# samples, joint: all within 1.5 %). The peak comes in the backward of a checkpointed LLM layer
# (its recomputed working set, one layer at a time), so it does not grow with depth: at 2, 4 and
# 6 layers the heap's peak grew by the state planned for the added layers alone (README). The
# ZeRO-3 runs' heaps are below their plans (the gathered LM head does not show there), so they
# do not set it. Stage 1 encodes a micro-batch's frames in one image-encoder call (fp32 weights
# under autocast): per SAM 2 frame, the same minimax over its runs' peak RSS less their planned
# `cpu_retained`, since its second step peaks 1.3-1.9 GiB above its first in RSS (in malloc's
# bytes in use only +0.08 GiB: 7.00 / 7.08 at 8 frames, README).
TRANSIENT_BYTES = {"llm_token": 111_000, "stage1_frame": 200_000_000}
# On CPU only: RSS that glibc malloc keeps after torch frees it (freed chunks of its arenas, not
# returned to the system) and other memory outside malloc, which a `--device cpu` run's peak RSS
# counts and a GPU's allocator does not hold in this form. Measured as the runs' peak RSS less
# their heap peak: it grew with depth while the heap did not (0.55 / 0.89 / 1.20 GiB at 2 / 4 / 6
# LLM layers: each layer's recomputation frees its working set into the arenas) and with SAM 2's
# work (joint, 4 SAM 2 frames: 1.15 GiB at 2 layers). Fitted as bytes per LLM token and layer
# plus a fraction of SAM 2's saved activations (minimax over the stage-2 and joint runs' RSS).
# With MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0 RSS came within
# 0.1 GiB of the heap at 2 and 4 layers (README). `plan_memory(..., device="cpu")` adds it;
# `sec-train plan` plans GPUs without it.
CPU_RETAINED_BYTES = {"llm_token_layer": 110_000, "sam_activation_fraction": 0.46}


def sam_units(cfg: TrainConfig, shape: Shape) -> int:
    """What SAM 2's activations scale with (`SAM_ACTIVATION_BYTES`): concept-only samples (one
    target frame each), fused SAM 2 frames x objects, stage-1 tracked frames x objects (each clip
    tracks `stage1_tracked_frames` of its frames after the first)."""
    mode = cfg.model.mode
    if mode == "concept_only":
        return shape.samples
    if mode == "stage1":
        frames = shape.sam_frames // shape.samples
        return shape.samples * min(cfg.model.stage1_tracked_frames, frames - 1) * shape.objects
    return shape.sam_frames * shape.objects


def sam_activation_bytes(cfg: TrainConfig, shape: Shape) -> float:
    """Bytes autograd keeps for SAM 2's side of one micro-batch of `shape`."""
    return SAM_ACTIVATION_BYTES[cfg.model.mode] * sam_units(cfg, shape)


def activation_bytes(cfg: TrainConfig, shape: Shape, depth: Depth) -> float:
    """Bytes autograd keeps for backward for one micro-batch of `shape`."""
    mode, checkpointing = cfg.model.mode, cfg.model.activation_checkpointing
    sam = sam_activation_bytes(cfg, shape)
    if mode == "stage1":  # no LVLM forward
        return sam
    if checkpointing not in LVLM_ACTIVATION_BYTES:
        raise ValueError(f"no measured LVLM activation sizes for activation_checkpointing={checkpointing}")
    per = LVLM_ACTIVATION_BYTES[checkpointing]
    lvlm = (
        per["llm_layers"] * shape.llm_tokens * depth.llm
        + per["vit"] * shape.lvlm_frames * depth.vit
        + per["lvlm_other"] * shape.llm_tokens
    )
    return lvlm + sam


def transient_bytes(cfg: TrainConfig, shape: Shape) -> float:
    """The step's transient bytes (`TRANSIENT_BYTES`) for one micro-batch of `shape`, whatever
    the depth."""
    if cfg.model.mode == "stage1":
        return TRANSIENT_BYTES["stage1_frame"] * shape.sam_frames
    return TRANSIENT_BYTES["llm_token"] * shape.llm_tokens


def cpu_retained_bytes(cfg: TrainConfig, shape: Shape, depth: Depth) -> float:
    """What a CPU run's RSS holds beyond its live allocations (`CPU_RETAINED_BYTES`)."""
    per = CPU_RETAINED_BYTES
    lvlm = 0 if cfg.model.mode == "stage1" else shape.llm_tokens * depth.llm
    return per["llm_token_layer"] * lvlm + per["sam_activation_fraction"] * sam_activation_bytes(cfg, shape)


def gathered_bytes(counts: dict[str, int], weight: int, zero: int) -> int:
    """ZeRO-3's gathered weights in flight beyond its prefetch bucket: it gathers a module's whole
    weights to run it, and autograd keeps them to the module's backward when its output needs a
    gradient; the largest module the step runs bounds that (SeC's LM head, 311 M parameters, 0.58
    GiB in bf16: the runs' steps took +0.39 and +0.74 GiB over ZeRO-2 in stage 2 and joint, and
    -0.18 in stage 1, which never runs the LVLM). At one GPU it is a second copy; at N it comes on
    top of a 1/N partition."""
    return counts["largest"] * weight if zero == 3 else 0


def plan_memory(
    cfg: TrainConfig,
    shape: Shape,
    zero: int,
    gpus: int,
    depth: Depth | None = None,
    counts: dict[str, int] | None = None,
    device: str = "cuda",
) -> dict[str, int]:
    """Bytes per GPU by component for one micro-batch of `shape` (see the module docstring);
    with `device="cpu"`, the peak RSS of a CPU run of it, with what malloc keeps there
    ("cpu_retained", `CPU_RETAINED_BYTES`).

    Args:
        cfg (`TrainConfig`): the recipe (trainable policy, precision, mode, checkpointing).
        shape (`Shape`): the micro-batch on one GPU.
        zero (`int`): DeepSpeed ZeRO stage, 2 or 3.
        gpus (`int`): data-parallel GPUs the state is sharded over.
        depth (`Depth`, *optional*): the model's depth; default the real one.
        counts (`dict`, *optional*): `parameter_counts(cfg, depth)`, when the caller has them.
        device (`str`, *optional*): "cuda" (default) or "cpu", the device the step runs on.
    """
    depth = depth or Depth()
    counts = counts or parameter_counts(cfg, depth)
    w = weight_bytes(cfg)
    out = state_bytes(counts["total"], counts["trainable"], w, zero, gpus)
    out["activations"] = int(activation_bytes(cfg, shape, depth))
    out["workspace"] = int(
        bucket_bytes(counts["hidden"], w, zero)
        + gathered_bytes(counts, w, zero)
        + transient_bytes(cfg, shape)
    )
    if device == "cpu":
        out["cpu_retained"] = int(cpu_retained_bytes(cfg, shape, depth))
    out["total"] = sum(out.values())
    return out


def bucket_bytes(hidden: int, weight: int, zero: int) -> int:
    """DeepSpeed's gradient buckets as `sec_train.train.accel` sizes them (hidden^2 elements):
    ZeRO-2 double-buffers its reduce bucket (overlap_comm), ZeRO-3 has a reduce and a prefetch one."""
    bucket = hidden * hidden
    return (2 * bucket if zero == 2 else bucket + int(0.9 * bucket)) * weight


def state_bytes(total: int, trainable: int, weight: int, zero: int, gpus: int) -> dict[str, int]:
    """Weights, gradients and optimizer state per GPU for `total` parameters of which
    `trainable` train, `weight` bytes each (see the module docstring)."""
    return {
        "weights": total * weight // (gpus if zero == 3 else 1),
        "gradients": trainable * weight // gpus,
        "optimizer": trainable * ADAM_BYTES // gpus,  # DeepSpeed's fp32 partition is a copy in fp32 too
    }


def sample_shape(cfg: TrainConfig, depth: Depth | None = None) -> Shape:
    """One sample at its largest, from the recipe's data config: stage 2 with `max_refs`
    reference frames plus the target (256 tokens each, plus the prompt's text) and `max_context`
    + 1 SAM 2 frames; stage 1 with `num_frames` frames of `max_objects` objects."""
    if cfg.model.mode == "stage1":
        s1 = cfg.data.stage1
        return Shape(samples=1, sam_frames=s1.num_frames, objects=s1.max_objects)
    s2 = cfg.data.stage2
    frames = s2.max_refs + 1
    return Shape(
        samples=1,
        llm_tokens=prompt_tokens(frames),
        lvlm_frames=frames,
        sam_frames=s2.max_context + 1,
    )


def prompt_tokens(frames: int) -> int:
    """The longest stage-2 prompt over `frames` frames, padded to 8 as the collator pads it
    (the toy tokenizer's text tokens; the image tokens are most of it)."""
    tokenizer = build_toy_tokenizer()
    longest = max(
        len(training_prompt(tokenizer, frames, IMAGE_TOKENS, np.random.default_rng(seed))[0])
        for seed in range(32)
    )
    return -(-longest // 8) * 8


def largest_batch(
    cfg: TrainConfig, zero: int, gpus: int, budget: int, counts: dict[str, int], limit: int = 256
) -> int:
    """The most samples per GPU whose planned total fits in `budget` bytes (0 if none)."""
    one = sample_shape(cfg)
    fits = 0
    for samples in range(1, limit + 1):
        if plan_memory(cfg, one.scaled(samples), zero, gpus, counts=counts)["total"] > budget:
            break
        fits = samples
    return fits


def plan(cfg: TrainConfig, gpus: int, gpu_memory_gib: float, batch: int | None = None) -> dict:
    """The plan of `sec-train plan`: per ZeRO stage and checkpointing setting, the memory of the
    recipe's micro-batch (or `batch`) and the largest micro-batch that fits."""
    batch = batch or cfg.batch_size
    budget = int(gpu_memory_gib * GIB)
    result: dict = {"gpus": gpus, "gpu_memory_gib": gpu_memory_gib, "batch": batch, "plans": []}
    counts = parameter_counts(cfg, Depth())
    for zero in (2, 3):
        for checkpointing in (True, False):
            variant = dataclasses.replace(
                cfg, model=dataclasses.replace(cfg.model, activation_checkpointing=checkpointing)
            )
            entry = {"zero": zero, "activation_checkpointing": checkpointing}
            try:
                memory = plan_memory(variant, sample_shape(variant).scaled(batch), zero, gpus, counts=counts)
            except ValueError as err:  # activation sizes not measured for this setting
                result["plans"].append({**entry, "memory_gib": None, "note": str(err)})
                continue
            entry["memory_gib"] = {k: round(v / GIB, 2) for k, v in memory.items()}
            entry["fits"] = memory["total"] <= budget
            entry["largest_batch"] = largest_batch(variant, zero, gpus, budget, counts)
            result["plans"].append(entry)
    return result


def check_against(result: dict) -> dict:
    """The plan for the run a `python -m sec_train.bench model --json` line describes (its recipe,
    overrides, ZeRO stage, depth and batch) on the run's device, beside the peak memory the run
    measured; where the run measured malloc's bytes in use ("heap_peak", CPU), also the plan a
    GPU gets (without `cpu_retained`) beside that live peak."""
    cfg = load_config(str(CONFIGS / f"{result['recipe']}.yaml"), result["overrides"])
    depth = Depth(**result["depth"])
    shape = Shape(**result["batch"])
    planned = plan_memory(cfg, shape, result["zero"], gpus=1, depth=depth, device=result["device"])
    memory = result["memory_gib"]
    measured = memory["peak"] * GIB
    row = {
        "recipe": result["recipe"],
        "zero": result["zero"],
        "layers": depth.llm,
        "samples": shape.samples,
        "measured_gib": measured / GIB,
        "planned_gib": planned["total"] / GIB,
        "planned_over_measured": planned["total"] / measured,
    }
    if memory.get("heap_peak") is not None:
        live = planned["total"] - planned.get("cpu_retained", 0)
        row["live_planned_over_heap"] = live / (memory["heap_peak"] * GIB)
    return row


def check(paths: list[str]) -> list[dict]:
    """`check_against` for every run line of the files at `paths`."""
    results = []
    for path in paths:
        lines = Path(path).read_text().splitlines()
        for number, line in enumerate(lines, 1):
            if not line.startswith("{"):
                continue
            result = json.loads(line)
            if "overrides" not in result:
                raise ValueError(f"{path}:{number}: a run line without 'overrides' (from an older bench)")
            results.append(check_against(result))
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sec-train plan", description=__doc__)
    parser.add_argument("--config", help="a real recipe (sec_stage1, sec_stage2, sec_joint, ...)")
    parser.add_argument("--gpus", type=int, help="data-parallel GPUs")
    parser.add_argument("--gpu-memory", type=float, help="memory per GPU, GiB")
    parser.add_argument("--batch", type=int, help="samples per GPU (default: the recipe's batch_size)")
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="RUNS.jsonl",
        help="instead: plan each run of `python -m sec_train.bench model --json` output, beside its peak",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if args.check:
        for row in check(args.check):
            print(
                json.dumps(row)
                if args.json
                else " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            )
        return 0
    if args.config is None or args.gpus is None or args.gpu_memory is None:
        parser.error("--config, --gpus and --gpu-memory are required (or --check)")
    cfg = load_config(args.config, args.overrides)
    result = plan(cfg, args.gpus, args.gpu_memory, args.batch)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.config}: {args.gpus} GPU(s) x {args.gpu_memory} GiB, {result['batch']} samples per GPU")
    print("zero  ckpt  weights  grads  optim  activ  workspace  total  fits  largest batch")
    for p in result["plans"]:
        m = p["memory_gib"]
        if m is None:
            print(f"{p['zero']:>4}  {'on' if p['activation_checkpointing'] else 'off':>4}  {p['note']}")
            continue
        print(
            f"{p['zero']:>4}  {'on' if p['activation_checkpointing'] else 'off':>4}  {m['weights']:>7}  "
            f"{m['gradients']:>5}  {m['optimizer']:>5}  {m['activations']:>5}  {m['workspace']:>9}  "
            f"{m['total']:>5}  "
            f"{'yes' if p['fits'] else 'no':>4}  {p['largest_batch']:>13}"
        )
    return 0
