"""The trainable policy: which of SeC's weights receive gradients, and LoRA on the LLM (and ViT).

Everything is frozen first; then `TrainableConfig` switches parts on. LoRA is injected in place
with peft's `inject_adapter_in_model`, so `model.lvlm` keeps its class and its state-dict names
gain only `.base_layer` / `.lora_A.default` / `.lora_B.default` parts; the peft config is kept in
`model.lora_config`. (transformers' own `add_adapter` wants a newer peft than the one pinned.)
"""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import inject_adapter_in_model
from torch import nn

from sec_train.model.config import TrainableConfig

ADAPTER_NAME = "default"

# SAM 2 parts by `Sam2VideoModel` attribute. "memory_encoder" holds everything that builds the
# memory bank and the object pointers; "memory_attention" what conditions a frame on it;
# "memory_temporal_encoding" the learned per-slot encodings of the bank (SAM 2's
# `maskmem_tpos_enc`), a part of its own because SeC's stage 1 trains them with the attention.
SAM2_PARTS: dict[str, tuple[str, ...]] = {
    "image_encoder": ("vision_encoder",),
    "prompt_encoder": ("prompt_encoder", "shared_image_embedding"),
    "mask_decoder": ("mask_decoder",),
    "memory_attention": ("memory_attention",),
    "memory_temporal_encoding": ("memory_temporal_positional_encoding",),
    "memory_encoder": (
        "memory_encoder",
        "mask_downsample",
        "no_object_pointer",
        "object_pointer_proj",
        "temporal_positional_encoding_projection_layer",
        "occlusion_spatial_embedding_parameter",
    ),
}

# Never trained: the tracker takes a prompted frame's mask as its output, so SAM 2's embeddings
# for a first frame without memory are never read (and DDP rejects trainable unused weights).
SAM2_UNUSED = ("no_memory_embedding", "no_memory_positional_encoding")

_LLM_PREFIX = r"model\.language_model\.layers\.\d+\.(?:self_attn|mlp)\."
_VIT_TARGETS = (
    r"model\.vision_tower\.encoder\.layer\.\d+\."
    r"(?:attention\.(?:q_proj|k_proj|v_proj|projection_layer)|mlp\.(?:fc1|fc2))"
)


def lora_target_regex(targets: list[str], vit: bool) -> str:
    """A peft `target_modules` regex: the named LLM projections, plus the ViT's linears if `vit`."""
    pattern = _LLM_PREFIX + "(?:" + "|".join(targets) + ")"
    return f"(?:{pattern}|{_VIT_TARGETS})" if vit else pattern


def peft_lora_config(cfg: TrainableConfig) -> PeftLoraConfig:
    """The peft LoRA config of a trainable policy (LLM projections, plus the ViT if `vit="lora"`)."""
    return PeftLoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=lora_target_regex(cfg.lora.targets, cfg.vit == "lora"),
    )


def inject_lora(model: nn.Module, peft_config: PeftLoraConfig) -> None:
    """Injects a LoRA adapter into `model.lvlm` in place and records its config in `model.lora_config`."""
    if model.lora_config is not None:
        raise ValueError("the model already has a LoRA adapter")
    inject_adapter_in_model(peft_config, model.lvlm, adapter_name=ADAPTER_NAME)
    model.lora_config = peft_config


def _add_or_keep_lora(model: nn.Module, peft_config: PeftLoraConfig) -> None:
    """Injects LoRA, or keeps the adapter a checkpoint brought if it is the same LoRA."""
    existing = model.lora_config
    if existing is None:
        inject_lora(model, peft_config)
        return
    fields = ("r", "lora_alpha", "target_modules")
    if any(getattr(existing, f) != getattr(peft_config, f) for f in fields):
        have = {f: getattr(existing, f) for f in fields}
        want = {f: getattr(peft_config, f) for f in fields}
        raise ValueError(
            f"the model already has LoRA {have} from its checkpoint but trainable.lora asks for {want}; "
            "merge it first (save_model_dir) to train a new adapter"
        )


def apply_trainable(model: nn.Module, cfg: TrainableConfig) -> list[str]:
    """Freezes SeC, adds LoRA, and unfreezes what `cfg` names.

    Args:
        model (`SeCModel`): the model; changed in place. An adapter it already has (loaded from a
            trainable checkpoint) is kept and trained on if it matches `cfg.lora`.
        cfg (`TrainableConfig`): the policy. `lora.r = 0` adds no LoRA and freezes an existing
            adapter; `vit = "lora"` puts LoRA on the ViT's linears too; each boolean trains one part.

    Returns:
        The names of the parameters that now require gradients, in `named_parameters` order.
    """
    use_lora = cfg.lora.r > 0
    if cfg.vit == "lora" and not use_lora:
        raise ValueError(
            "trainable.vit='lora' needs trainable.lora.r > 0 (the ViT shares the LLM's LoRA rank)"
        )
    if use_lora:
        _add_or_keep_lora(model, peft_lora_config(cfg))
    model.requires_grad_(False)
    for name, param in model.lvlm.named_parameters():
        if ".lora_" in name:
            param.requires_grad_(use_lora)
    if cfg.embeddings:
        model.lvlm.get_input_embeddings().requires_grad_(True)
        model.lvlm.get_output_embeddings().requires_grad_(True)
    model.lvlm.model.multi_modal_projector.requires_grad_(cfg.projector)
    model.text_hidden_fcs.requires_grad_(cfg.text_hidden_fcs)
    model.token_attn.requires_grad_(cfg.token_attn)
    for part, attributes in SAM2_PARTS.items():
        for attribute in attributes:
            # optional parts (e.g. the occlusion embedding) are None in some SAM 2 configs
            target = getattr(model.sam2, attribute, None)
            if target is not None:
                target.requires_grad_(getattr(cfg, part))
    return [name for name, param in model.named_parameters() if param.requires_grad]
