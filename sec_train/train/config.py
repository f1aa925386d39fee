"""The run schema: one recipe = model + data + optimizer + loop settings, checked by OmegaConf.

A recipe is a YAML file whose keys follow `TrainConfig`; command-line `key=value` overrides
(dotted paths, e.g. `optim.lr=1e-4 data.train=[shards/a]`) apply on top. Unknown keys are an
error that names the key and the closest valid one; values are type-checked against the
dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sec_train.data.config import DataConfig
from sec_train.model.config import ModelConfig


@dataclass
class OptimConfig:
    """AdamW, linear warm-up then cosine decay, clipping.

    `lr_groups` maps a parameter-name prefix (SeCModel state-dict names, e.g. "sam2.vision_encoder")
    to its own learning rate; the longest matching prefix wins and everything else uses `lr`.
    `layer_decay` < 1 scales the rates under `layer_decay_prefix` layer-wise, as SAM 2's training
    does for its image encoder: block i of N by decay^(N - i), embeddings by decay^(N + 1), the
    rest (the neck) by 1. Biases, norms and other 1-d parameters get no weight decay. The
    schedule warms up linearly over `warmup` (a fraction of `max_steps` if < 1, else a step
    count), then follows a cosine from the peak down to `min_lr_ratio` x peak at `max_steps`.
    """

    lr: float = 4e-5
    lr_groups: dict[str, float] = field(default_factory=dict)
    layer_decay: float = 1.0
    layer_decay_prefix: str = "sam2.vision_encoder"
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup: float = 0.05
    min_lr_ratio: float = 0.0


@dataclass
class WandbConfig:
    """Weights & Biases: offline by default (synced later with `wandb sync`), "online" to stream."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "sec-train"
    entity: str | None = None
    name: str | None = None


@dataclass
class TrainConfig:
    """One training run.

    Steps are optimizer steps; one step sees `batch_size` x `grad_accum` x processes samples.
    `resume` is None, "auto" (newest complete checkpoint under `out_dir`, or a fresh start if
    there is none) or a checkpoint path; it restores weights, optimizer, scheduler, RNG and data
    position. `init_from` loads weights (a trainable checkpoint directory) into the model as it
    is built: alone it starts at step 0 with a fresh optimizer; with a resume, the checkpoint then
    restores everything that trains (weights frozen in this run keep their `init_from` values).
    `precision` "auto" is fp32 on CPU; on CUDA, fp32 weights under bf16 autocast for stage 1 (as
    SAM 2's trainer) and bf16 weights otherwise (SeC's stage-2 DeepSpeed); see
    `sec_train.train.accel`. `deepspeed` names a DeepSpeed JSON whose
    "auto" values are filled from this recipe (None: plain accelerate).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    out_dir: str = "runs/default"
    seed: int = 0
    batch_size: int = 1
    grad_accum: int = 1
    max_steps: int = 1000
    precision: Literal["auto", "bf16", "fp32_autocast_bf16", "fp32"] = "auto"
    deepspeed: str | None = None
    log_every: int = 10
    val_every: int = 0
    val_max_videos: int | None = None
    save_every: int = 500
    keep_last: int = 3
    resume: str | None = None
    init_from: str | None = None
    max_nonfinite: int = 5


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema."""


def _check_keys(node: Any, schema: type, source: str, prefix: str = "") -> None:
    """Raises `ConfigError` for the first key of `node` that `schema` (a dataclass) lacks."""
    if not isinstance(node, DictConfig):
        return
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        full = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {sorted(fields)}"
            raise ConfigError(f"{source}: unknown key '{full}'{hint}")
        factory = fields[key].default_factory
        if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
            _check_keys(node._get_node(key), factory, source, f"{full}.")


def load_config(path: str | None, overrides: list[str] | None = None) -> TrainConfig:
    """Reads a recipe and applies `key=value` overrides.

    Args:
        path (`str`, *optional*): the recipe YAML; None starts from the schema defaults.
        overrides (`list[str]`, *optional*): dotted `key=value` items, applied in order.

    Returns:
        The checked `TrainConfig`.

    Raises:
        ConfigError: an unknown key (with the closest valid one), a value of the wrong type, or a
            malformed override; the message names the file or the override.
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
    merged = OmegaConf.merge(
        OmegaConf.structured(_omegaconf_schema(TrainConfig)), dataclasses.asdict(TrainConfig())
    )
    for source, layer in layers:
        _check_keys(layer, TrainConfig, source)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{source}: {err}") from err
    cfg = _instantiate(TrainConfig, OmegaConf.to_container(merged, resolve=True), "")
    _check_values(cfg)
    return cfg


@functools.cache
def _omegaconf_schema(schema: type) -> type:
    """A copy of dataclass `schema` that OmegaConf 2.3 can type-check: it has no `Literal`
    support, so those fields become `str` here and `_instantiate` checks their values."""
    hints = typing.get_type_hints(schema)
    specs = []
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            mirror = _omegaconf_schema(hint)
            specs.append((f.name, mirror, field(default_factory=mirror)))
        else:
            specs.append((f.name, _without_literal(hint), field(default=MISSING)))
    return dataclasses.make_dataclass(f"{schema.__name__}Schema", specs)


def _without_literal(hint: Any) -> Any:
    if typing.get_origin(hint) is Literal:
        return str
    args = typing.get_args(hint)
    if type(None) in args and any(typing.get_origin(a) is Literal for a in args):
        return str | None
    return hint


def _instantiate(schema: type, data: dict[str, Any], prefix: str) -> Any:
    """Builds dataclass `schema` from merged plain data, checking `Literal` fields."""
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for f in dataclasses.fields(schema):
        hint, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(hint):
            value = _instantiate(hint, value, f"{prefix}{f.name}.")
        else:
            allowed = [
                a
                for h in (hint, *typing.get_args(hint))
                if typing.get_origin(h) is Literal
                for a in typing.get_args(h)
            ]
            if (
                allowed
                and value not in allowed
                and not (value is None and type(None) in typing.get_args(hint))
            ):
                raise ConfigError(f"{prefix}{f.name}: invalid value {value!r}, expected one of {allowed}")
        kwargs[f.name] = value
    return schema(**kwargs)


def _check_values(cfg: TrainConfig) -> None:
    """Range checks the types alone cannot express."""
    positive = (
        "batch_size",
        "grad_accum",
        "max_steps",
        "log_every",
        "save_every",
        "keep_last",
        "max_nonfinite",
    )
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if len(cfg.optim.betas) != 2:
        raise ConfigError(f"optim.betas must hold two values, got {cfg.optim.betas}")


def to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML (printed at start, saved with each checkpoint)."""
    return OmegaConf.to_yaml(OmegaConf.create(dataclasses.asdict(cfg)))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain containers (for wandb)."""
    return dataclasses.asdict(cfg)
