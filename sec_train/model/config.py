"""The model's part of a recipe: which weights to build from and what trains."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["stage1", "concept_only", "fused"]


@dataclass
class LoraConfig:
    """LoRA on the LLM (peft). r=0 disables it."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class TrainableConfig:
    """What receives gradients. Everything not named here is frozen."""

    lora: LoraConfig = field(default_factory=LoraConfig)
    embeddings: bool = True  # LLM input and output embeddings (the new [SEG] row must learn)
    vit: Literal["frozen", "lora"] = "frozen"
    projector: bool = True  # InternVL's MLP projector (ViT -> LLM); SeC's stage 2 trains it
    text_hidden_fcs: bool = True
    token_attn: bool = False
    mask_decoder: bool = False
    memory_attention: bool = False
    memory_temporal_encoding: bool = False  # the bank's per-slot encodings; SeC's stage 1 trains them
    memory_encoder: bool = False
    image_encoder: bool = False
    prompt_encoder: bool = False


@dataclass
class LossConfig:
    """SAM 2's multi-mask loss weights, as SEC_REFERENCE gives them, plus the LLM's."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0
    lm: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


@dataclass
class ModelConfig:
    """`lvlm` / `sam2` are "toy" or a local HF-format directory; `init` a saved SeC model dir."""

    mode: Mode = "concept_only"
    lvlm: str = "toy"
    sam2: str = "toy"
    init: str | None = None
    # memory bank size; None keeps the checkpoint's (7 for SAM 2.1 and toy), a number resizes it
    num_maskmem: int | None = None
    # recompute the LVLM's layer activations in backward: real sizes need it at batch 8 per GPU
    activation_checkpointing: bool = False
    stage1_tracked_frames: int = 8  # later frames tracked from memory; the rest get GT masks as input
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    loss: LossConfig = field(default_factory=LossConfig)
