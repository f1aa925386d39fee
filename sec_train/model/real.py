"""SeC at real widths (InternVL 2.5-4B + SAM 2.1-L) with random weights, optionally truncated
in depth, built fast: parameters on the meta device, materialised directly in the training
dtype, initialised in place.

`layers` truncates the three deep stacks alike: the LLM (36 layers) and the ViT (24) keep their
first `layers` layers, and Hiera's third stage (36 of its 48 blocks) keeps `layers` blocks with
one global-attention block last. Everything else (memory attention, memory encoder, mask decoder,
embeddings, projector, `text_hidden_fcs`, `token_attn`) keeps its real size.
"""

from __future__ import annotations

import dataclasses

import torch
from accelerate import init_empty_weights
from transformers import InternVLForConditionalGeneration, Sam2VideoModel

from sec_train.model.config import ModelConfig
from sec_train.model.lvlm import real_lvlm_config
from sec_train.model.sam2 import real_sam2_config
from sec_train.model.sec import SeCModel
from sec_train.model.tokenizer import build_toy_tokenizer
from sec_train.model.trainable import apply_trainable
from sec_train.tokens import IMG_CONTEXT

REAL_LLM_LAYERS, REAL_VIT_LAYERS, REAL_HIERA_STAGE3 = 36, 24, 36
NUM_MASKMEM = 22  # the stage-1 bank SeC trains and stage 2 inherits


@dataclasses.dataclass(frozen=True)
class Depth:
    """Layers of the LLM and ViT and blocks of Hiera's third stage (None: the real depth)."""

    llm: int = REAL_LLM_LAYERS
    vit: int = REAL_VIT_LAYERS
    hiera_stage3: int = REAL_HIERA_STAGE3

    @classmethod
    def truncated(cls, layers: int | None) -> Depth:
        if layers is None:
            return cls()
        if layers < 2:
            raise ValueError(
                f"--layers must be at least 2 (Hiera's global block needs a stage of 2), got {layers}"
            )
        return cls(min(layers, REAL_LLM_LAYERS), min(layers, REAL_VIT_LAYERS), min(layers, REAL_HIERA_STAGE3))

    @property
    def is_real(self) -> bool:
        return self == Depth()


def lvlm_config(depth: Depth):
    config = real_lvlm_config()
    config.text_config.num_hidden_layers = depth.llm
    if getattr(config.text_config, "layer_types", None):
        config.text_config.layer_types = config.text_config.layer_types[: depth.llm]
    config.vision_config.num_hidden_layers = depth.vit
    return config


def sam2_config(depth: Depth):
    config = real_sam2_config(NUM_MASKMEM)
    if depth.hiera_stage3 != REAL_HIERA_STAGE3:
        backbone = config.vision_config.backbone_config
        stages = list(backbone.blocks_per_stage)
        stages[2] = depth.hiera_stage3
        backbone.blocks_per_stage = stages
        # one global-attention block, the last of stage 3 (its first block pools, so it cannot be)
        backbone.global_attention_blocks = [stages[0] + stages[1] + stages[2] - 1]
    return config


def _materialise(model: torch.nn.Module, device: str, dtype: torch.dtype) -> None:
    """Meta parameters -> empty `dtype` tensors on `device`, then N(0, 0.02) for matrices and
    kernels, ones for norm scales and layer scales, zeros for other vectors. Buffers (rotary
    frequencies, position encodings) were built for real and keep their values."""
    buffers = {name: buf.to(device) for name, buf in model.named_buffers()}
    model.to(dtype)  # meta tensors: free
    model.to_empty(device=device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                param.normal_(0.0, 0.02)
            elif "norm" in name.lower() and name.endswith("weight"):
                param.fill_(1.0)
            elif "lambda" in name or "layer_scale" in name or name.endswith(".scale"):
                param.fill_(0.1)
            else:
                param.zero_()
        for name, buf in buffers.items():
            owner, _, leaf = name.rpartition(".")
            module = model.get_submodule(owner)
            module.register_buffer(leaf, buf, persistent=leaf not in module._non_persistent_buffers_set)


def meta_real_model(cfg: ModelConfig, depth: Depth) -> SeCModel:
    """The recipe's SeC at real widths and `depth`: parameters on the meta device (no memory),
    buffers real, the trainable policy applied; for counting, planning and materialising."""
    with init_empty_weights(include_buffers=False):
        lvlm = InternVLForConditionalGeneration(lvlm_config(depth))
        sam2 = Sam2VideoModel(sam2_config(depth))
        model = SeCModel(dataclasses.replace(cfg, init=None, lvlm="real", sam2="real"), lvlm, None, sam2)
        apply_trainable(model, cfg.trainable)
    return model


def random_real_model(
    cfg: ModelConfig, depth: Depth, device: str = "cpu", dtype: torch.dtype = torch.bfloat16
) -> SeCModel:
    """The recipe's SeC at real widths and `depth`, random weights in `dtype` on `device`, with
    the recipe's trainable policy applied, in train mode.

    The tokenizer is the toy one: it has the same special tokens, and the batches only need their ids.
    """
    model = meta_real_model(cfg, depth)
    tokenizer = build_toy_tokenizer()
    model.lvlm.config.image_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    model.tokenizer = tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _materialise(model, device, dtype)
    return model.train()
