"""What a run reports: a console progress bar, `metrics.jsonl` and wandb, from the main process.

Throughput is measured between two log points: samples/s and tokens/s over all processes, and
on CUDA the peak memory per GPU and an MFU estimate.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sec_train.train.config import TrainConfig, to_dict

# dense bf16 peak of one GPU, by a substring of its CUDA device name
_PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40": 181e12, "A10": 125e12}
METRICS_FILE = "metrics.jsonl"


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak FLOP/s of `device`, or None on CPU or an unknown GPU (no MFU then)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in _PEAK_BF16_FLOPS.items() if key in name), None)


def flops_per_token(model: torch.nn.Module) -> float:
    """Training FLOPs per LLM token, an estimate for MFU: 2 x all parameters forward, the same
    again for the input gradients backward, plus 2 x the trainable ones for weight gradients.
    It counts parameters once per token, so ViT and SAM 2 work is attributed per LLM token."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4.0 * total + 2.0 * trainable


class Throughput:
    """Samples and tokens since the last `rates()` call, turned into per-second figures."""

    def __init__(self, flops_per_token: float, peak_flops_total: float | None):
        self.flops_per_token = flops_per_token
        self.peak_flops_total = peak_flops_total
        self._reset()

    def _reset(self) -> None:
        self.samples = 0
        self.tokens = 0
        self.start = time.perf_counter()

    def add(self, samples: int, tokens: int) -> None:
        self.samples += samples
        self.tokens += tokens

    def rates(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rates = {"samples_per_s": self.samples / elapsed, "tokens_per_s": self.tokens / elapsed}
        if self.peak_flops_total:
            rates["mfu"] = rates["tokens_per_s"] * self.flops_per_token / self.peak_flops_total
        if torch.cuda.is_available():
            rates["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        self._reset()
        return rates


class RunLogger:
    """Writes metrics to the console bar, `OUT/metrics.jsonl` and wandb; a no-op off the main process.

    Args:
        cfg (`TrainConfig`): the run; `wandb.*` picks the wandb mode, `out_dir` the files.
        enabled (`bool`): True on the main process only.
        start_step (`int`): the step the run (re)starts from, for the bar.
    """

    def __init__(self, cfg: TrainConfig, enabled: bool, start_step: int):
        self.enabled = enabled
        self.run = None
        if not enabled:
            return
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(out / METRICS_FILE, start_step)
        self.metrics = (out / METRICS_FILE).open("a")
        self.bar = tqdm(total=cfg.max_steps, initial=start_step, desc="train", dynamic_ncols=True)
        if cfg.wandb.mode != "disabled":
            self.run = _start_wandb(cfg, out)

    def step(self) -> None:
        """Advances the bar by one optimizer step."""
        if self.enabled:
            self.bar.update(1)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Records `metrics` at `step` everywhere and shows the short ones on the bar."""
        if not self.enabled:
            return
        self.metrics.write(json.dumps({"step": step, **metrics}) + "\n")
        self.metrics.flush()
        if self.run is not None:
            self.run.log(metrics, step=step)
        shown = {k.removeprefix("loss_"): v for k, v in metrics.items() if not k.startswith("val/")}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def print(self, text: str) -> None:
        """A line above the bar."""
        if self.enabled:
            self.bar.write(text)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.metrics.close()
        if self.run is not None:
            self.run.finish()


def _truncate_metrics(path: Path, start_step: int) -> None:
    """Drops records after `start_step`: a resumed run replays those steps and logs them again."""
    if not path.is_file():
        return
    kept = [
        line for line in path.read_text().splitlines(keepends=True) if json.loads(line)["step"] <= start_step
    ]
    path.write_text("".join(kept))


def _start_wandb(cfg: TrainConfig, out: Path) -> Any:
    """Starts (or, after a resume, continues) the run's wandb run; its id lives in `OUT/wandb_id`."""
    import wandb

    id_file = out / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id + "\n")
    return wandb.init(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        name=cfg.wandb.name or out.name,
        mode=cfg.wandb.mode,
        dir=str(out),
        id=run_id,
        resume="allow",
        config=to_dict(cfg),
    )
