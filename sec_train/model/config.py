"""The model's part of a recipe: which weights to build from and what trains.

Saved with every checkpoint and model directory as `sec_config.json`; recipes and saved configs
both become these dataclasses through `sec_train.schema.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sec_train.schema import check, check_choices

Mode = Literal["stage1", "concept_only", "fused"]
# which earlier frames SAM 2 tracking reads (see `Sam2Tracker`)
MemorySelection = Literal["recent", "reliable"]


@dataclass
class LoraConfig:
    """LoRA on the LLM (peft)."""

    r: int = 128
    """Rank; 0 adds no LoRA (and freezes an adapter the init checkpoint brought)."""
    alpha: int = 256
    """Scale numerator: the update is multiplied by alpha / r."""
    dropout: float = 0.05
    """Dropout on the LoRA branch's input, in [0, 1)."""
    targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """The LLM layers' projections that get LoRA (attribute names under self_attn / mlp)."""

    def __post_init__(self) -> None:
        check(self.r >= 0, "r", self.r, ">= 0")
        check(self.alpha > 0, "alpha", self.alpha, "> 0")
        check(0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")
        check(len(self.targets) > 0, "targets", self.targets, "a non-empty list")


@dataclass
class TrainableConfig:
    """What receives gradients. Everything not named here is frozen."""

    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA on the LLM (and on the ViT with `vit="lora"`)."""
    embeddings: bool = True
    """The LLM's input and output embeddings (the new `[SEG]` row must learn)."""
    vit: Literal["frozen", "lora"] = "frozen"
    """The InternVL vision tower: frozen, or LoRA with the LLM's rank."""
    projector: bool = True
    """InternVL's MLP projector from the ViT to the LLM (the release's `mlp1`; SeC's stage 2
    trains it)."""
    text_hidden_fcs: bool = True
    """The MLP from the `[SEG]` hidden state to the 256-d concept."""
    token_attn: bool = False
    """The concept attention (SeC's copy of SAM 2's memory attention)."""
    mask_decoder: bool = False
    """SAM 2's mask decoder."""
    memory_attention: bool = False
    """SAM 2's memory attention (stage 1 trains it)."""
    memory_temporal_encoding: bool = False
    """SAM 2's learned per-slot encodings of the memory bank (`maskmem_tpos_enc`; SeC's stage 1
    trains them with the memory attention)."""
    memory_encoder: bool = False
    """SAM 2's memory encoder and object-pointer parts (not the temporal encodings)."""
    image_encoder: bool = False
    """SAM 2's Hiera image encoder."""
    prompt_encoder: bool = False
    """SAM 2's prompt encoder."""

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class LossConfig:
    """SAM 2's multi-mask loss weights, as SEC_REFERENCE gives them, plus the LLM's."""

    focal: float = 20.0
    """Weight of the focal loss on the mask logits."""
    dice: float = 1.0
    """Weight of the dice loss on the masks."""
    iou: float = 1.0
    """Weight of the IoU prediction's L1 loss."""
    object_score: float = 1.0
    """Weight of the object-score (is the object there) cross-entropy."""
    lm: float = 1.0
    """Weight of the LLM's next-token cross-entropy on the answer (stage 2)."""
    focal_alpha: float = 0.25
    """Focal loss's positive-class weight, in [0, 1]."""
    focal_gamma: float = 2.0
    """Focal loss's focusing exponent, >= 0."""

    def __post_init__(self) -> None:
        for name in ("focal", "dice", "iou", "object_score", "lm", "focal_gamma"):
            check(getattr(self, name) >= 0, name, getattr(self, name), ">= 0")
        check(0 <= self.focal_alpha <= 1, "focal_alpha", self.focal_alpha, "in [0, 1]")


@dataclass
class ModelConfig:
    """The model of a run; `sec_train.model.build` turns it into weights."""

    mode: Mode = "concept_only"
    """What forward computes: "stage1" (SAM 2 tracking), "concept_only" (the released stage-2
    recipe: the concept alone conditions the target frame) or "fused" (memory + concept, as
    inference does)."""
    lvlm: str = "toy"
    """The LVLM: "toy" (random, small), "toy_concept" (random, 112 px frames, for the concept
    benchmark), "real" (InternVL 2.5-4B shapes on the meta device) or a local HF-format InternVL
    directory. Ignored when `init` is set (see `init_lvlm`)."""
    sam2: str = "toy"
    """SAM 2: "toy", "real" or a local HF-format `Sam2VideoModel` directory. Ignored when `init`
    is set."""
    init: str | None = None
    """The one "start from these weights" key: a model directory (`save_model_dir`) or a
    trainable checkpoint (`save_trainable`), which is rebuilt on the base its own
    `sec_config.json` names. Recorded in this run's checkpoints, so they reload on it. Alone it
    starts at step 0 with a fresh optimizer; with `resume`, the checkpoint then restores
    everything that trains (frozen weights keep their `init` values)."""
    init_lvlm: str | None = None
    """With `init` a trainable checkpoint that trained nothing of the LVLM (stage 1): the LVLM to
    build in its base's place (the values of `lvlm`), as SeC's stage 2 pairs stage 1's SAM 2 with
    a pretrained InternVL. So stage 1 can run before (or beside) the LVLM's own pretraining. None
    keeps the checkpoint's; recorded, so this run's checkpoints reload on it."""
    token_attn_init: Literal["memory_attention", "base"] = "memory_attention"
    """Where `token_attn` starts when `init` is a trainable checkpoint that trained SAM 2's
    memory attention but not `token_attn` (stage 1): "memory_attention" copies that trained
    memory attention into it, as SeC initialises `token_attn` from the memory attention it
    starts from (logged); "base" keeps the base's `token_attn`."""
    token_attn_dropout: float | None = None
    """`token_attn`'s dropout in training (residual branches, MLP, attention weights); None keeps
    SAM 2's memory attention's (0.1), as SeC's copy does. Its attention reads only 4 concept
    tokens, so attention dropout 0.1 hides a token's share of the concept at random;
    `toy_concept_only.yaml` sets 0 (TRAIN.md, "The concept benchmark")."""
    num_maskmem: int | None = None
    """SAM 2's memory bank size; None keeps the checkpoint's (7 for SAM 2.1 and toy)."""
    activation_checkpointing: bool = False
    """Recompute the LVLM's layer activations in backward: real sizes need it at batch 8 per GPU."""
    stage1_tracked_frames: int = 8
    """Stage 1: later frames tracked from memory; the rest get their GT masks as input."""
    memory_selection: MemorySelection = "recent"
    """Which earlier frames SAM 2 tracking reads in training (see `Sam2Tracker`): "recent" as SAM
    2's and SeC's trainers do, "reliable" as SeC's released predictor (inference uses "reliable"
    whatever this says)."""
    multimask_tracking: bool | None = None
    """Whether SAM 2 makes 3 masks on a frame tracked without prompts and keeps the one its IoU
    head rates best, as SAM 2.1 (and SeC's predictor with it) does; false: one mask. None keeps
    `init`'s, else the SAM 2 checkpoint's (true for "toy" and "real"). A toy SAM 2 trained from
    scratch can cover two objects with two of its 3 masks and then never learns to read its memory
    (TRAIN.md, "The concept benchmark"). False also keeps output token 0 at inference, where SAM
    2.1's decoder would swap an unstable one for its best multimask output, which one-mask
    training never trains (`set_multimask_tracking`)."""
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    """What receives gradients."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights."""

    def __post_init__(self) -> None:
        check_choices(self)
        if self.num_maskmem is not None:
            check(self.num_maskmem >= 1, "num_maskmem", self.num_maskmem, ">= 1 or null")
        dropout = self.token_attn_dropout
        if dropout is not None:
            check(0 <= dropout < 1, "token_attn_dropout", dropout, "in [0, 1) or null")
        check(self.stage1_tracked_frames >= 1, "stage1_tracked_frames", self.stage1_tracked_frames, ">= 1")
