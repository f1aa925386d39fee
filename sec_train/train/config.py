"""The run schema: one recipe = model + data + optimizer + loop settings.

A recipe is a YAML file whose keys follow `TrainConfig`; command-line `key=value` overrides
(dotted paths, e.g. `optim.lr=1e-4 data.train=[shards/a]`) apply on top. OmegaConf merges them
and checks types; `sec_train.schema.from_dict` (which `sec_config.json` goes through too) then
builds the dataclasses, whose `__post_init__` checks ranges. Unknown keys are an error that
names the key and the closest valid one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sec_train.data.config import DataConfig
from sec_train.model.config import ModelConfig
from sec_train.schema import ConfigError, check, check_choices, check_keys, from_dict


@dataclass
class OptimConfig:
    """AdamW, linear warm-up then cosine decay, clipping. Biases, norms and other 1-d parameters
    get no weight decay."""

    lr: float = 4e-5
    """Peak learning rate (> 0)."""
    lr_groups: dict[str, float] = field(default_factory=dict)
    """Parameter-name prefix (SeCModel state-dict names, e.g. "sam2.vision_encoder") -> its own
    peak learning rate; the longest matching prefix wins, everything else uses `lr`."""
    layer_decay: float = 1.0
    """In (0, 1]; < 1 scales the rates under `layer_decay_prefix` layer-wise, as SAM 2's
    training does for its image encoder: block i of N by decay^(N - i), embeddings by
    decay^(N + 1), the rest (the neck) by 1."""
    layer_decay_prefix: str = "sam2.vision_encoder"
    """The parameters `layer_decay` applies to."""
    weight_decay: float = 0.05
    """AdamW's decoupled weight decay (>= 0)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW's two moment decays, each in [0, 1)."""
    eps: float = 1e-8
    """AdamW's denominator epsilon (> 0)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (> 0)."""
    warmup: float = 0.05
    """Linear warm-up length: a fraction of `max_steps` if < 1, else a step count (>= 0)."""
    min_lr_ratio: float = 0.0
    """The cosine ends at this fraction of the peak at `max_steps`, in [0, 1]."""

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", self.lr, "> 0")
        for prefix, lr in self.lr_groups.items():
            check(lr >= 0, f"lr_groups.{prefix}", lr, ">= 0")
        check(0 < self.layer_decay <= 1, "layer_decay", self.layer_decay, "in (0, 1]")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must hold two values in [0, 1), got {self.betas!r}")
        check(self.eps > 0, "eps", self.eps, "> 0")
        check(self.grad_clip > 0, "grad_clip", self.grad_clip, "> 0")
        check(self.warmup >= 0, "warmup", self.warmup, ">= 0")
        check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", self.min_lr_ratio, "in [0, 1]")


@dataclass
class WandbConfig:
    """Weights & Biases logging."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    """"offline" writes locally (synced later with `wandb sync`), "online" streams."""
    project: str = "sec-train"
    """The wandb project."""
    entity: str | None = None
    """The wandb team or user; None: the default of the logged-in account."""
    name: str | None = None
    """The run's name; None: wandb picks one."""

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class TrainConfig:
    """One training run. Steps are optimizer steps; one step sees `batch_size` x `grad_accum` x
    processes samples. Start from other weights with `model.init`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model and what trains."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data and how it is sampled."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Experiment logging."""
    out_dir: str = "runs/default"
    """Where checkpoints and logs go."""
    seed: int = 0
    """Seeds weights' random init, data order and augmentation."""
    batch_size: int = 1
    """Samples per process per micro-batch (>= 1)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (>= 1)."""
    max_steps: int = 1000
    """Optimizer steps of the run (>= 1)."""
    precision: Literal["auto", "bf16", "fp32_autocast_bf16", "fp32"] = "auto"
    """"bf16": bf16 weights (DeepSpeed's, as SeC's stage 2); "fp32_autocast_bf16": fp32 weights,
    gradients and optimizer with the forward under bf16 autocast and fp32 mask logits for the
    loss (SAM 2's trainer, as SeC's stage 1); "fp32". "auto" is fp32 on CPU and, on CUDA,
    "fp32_autocast_bf16" for stage 1 and "bf16" otherwise (see `sec_train.train.accel`)."""
    deepspeed: str | None = None
    """A DeepSpeed JSON whose "auto" values are filled from this recipe; None: plain accelerate."""
    log_every: int = 10
    """Steps between metric logs (>= 1)."""
    val_every: int = 0
    """Steps between validations on `data.val`; 0: none (>= 0)."""
    val_max_videos: int | None = None
    """Videos per validation; None: all of them."""
    save_every: int = 500
    """Steps between checkpoints; the last step always saves (>= 1)."""
    keep_last: int = 3
    """Checkpoints kept under `out_dir`; older ones are deleted (>= 1)."""
    resume: str | None = None
    """None, "auto" (the newest complete checkpoint under `out_dir`, or a fresh start if there is
    none) or a checkpoint path: restores weights, optimizer, scheduler, RNG and data position."""
    max_nonfinite: int = 5
    """Non-finite losses in a row (each skipped) before the run stops (>= 1)."""

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("batch_size", "grad_accum", "max_steps", "log_every", "save_every", "keep_last"):
            check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self.max_nonfinite >= 1, "max_nonfinite", self.max_nonfinite, ">= 1")
        check(self.val_every >= 0, "val_every", self.val_every, ">= 0")
        if self.val_max_videos is not None:
            check(self.val_max_videos >= 1, "val_max_videos", self.val_max_videos, ">= 1 or null")


def load_config(path: str | None, overrides: list[str] | None = None) -> TrainConfig:
    """Reads a recipe and applies `key=value` overrides.

    Args:
        path (`str`, *optional*): the recipe YAML; None starts from the schema defaults.
        overrides (`list[str]`, *optional*): dotted `key=value` items, applied in order.

    Returns:
        The checked `TrainConfig`.

    Raises:
        ConfigError: an unknown key (with the closest valid one), a value of the wrong type or
            out of range, or a malformed override; the message names the file or the override.
    """
    layers = []
    if path is not None:
        try:
            layers.append((path, OmegaConf.load(path)))
        except (OSError, OmegaConfBaseException) as err:
            raise ConfigError(f"{path}: cannot read recipe: {err}") from err
    if overrides:
        bad = [item for item in overrides if "=" not in item]
        if bad:
            raise ConfigError(f"overrides must be key=value, got {bad}")
        layers.append(("command-line override", OmegaConf.from_dotlist(list(overrides))))
    merged = OmegaConf.structured(TrainConfig)
    for source, layer in layers:
        check_keys(OmegaConf.to_container(layer), TrainConfig, source)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            message = str(err).splitlines()[0]  # the rest repeats the key and the schema's types
            key = getattr(err, "full_key", "")
            raise ConfigError(f"{source}: {key}: {message[:1].lower()}{message[1:]}") from err
    sources = " + ".join(source for source, _ in layers) or "defaults"
    return from_dict(TrainConfig, OmegaConf.to_container(merged, resolve=True), sources)


def to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML (printed at start, saved with each checkpoint)."""
    return OmegaConf.to_yaml(OmegaConf.create(dataclasses.asdict(cfg)))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain containers (for wandb)."""
    return dataclasses.asdict(cfg)
