"""`token_attn`: SeC's concept attention, a second copy of SAM 2's memory attention.

The current frame's features cross-attend to the concept embedding (the LLM's `[SEG]` hidden
state projected to 256-d) instead of to the memory bank. The 256-d vector is split into 4
tokens of the memory width (64) with zero position embedding, and passed as object-pointer
tokens, which the memory attention exempts from RoPE.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import Sam2VideoModel

CONCEPT_DIM = 256


def build_token_attn(sam2: Sam2VideoModel, dropout: float | None = None) -> nn.Module:
    """A deep copy of `sam2.memory_attention`, initialised from its current weights.

    Args:
        sam2 (`Sam2VideoModel`): the SAM 2 whose memory attention is copied.
        dropout (`float`, *optional*): the copy's dropout in training, on its residual branches,
            its MLP and its attention weights; None keeps the memory attention's (SeC's copy).

    Returns:
        `nn.Module`: a `Sam2VideoMemoryAttention` with its own parameters.
    """
    token_attn = copy.deepcopy(sam2.memory_attention)
    if dropout is not None:
        for module in token_attn.modules():
            if isinstance(module, nn.Dropout):
                module.p = dropout
            elif hasattr(module, "dropout_p"):  # the attention weights' dropout
                module.dropout_p = dropout
    return token_attn


def concept_condition(
    token_attn: nn.Module,
    vision_feats: torch.Tensor,
    vision_pos: torch.Tensor,
    concept: torch.Tensor,
) -> torch.Tensor:
    """Conditions the current frame's top-level features on a concept embedding.

    Args:
        token_attn (`nn.Module`):
            The concept attention (`build_token_attn`).
        vision_feats (`torch.Tensor` of shape `(HW, N, C)`):
            Top-level image features of the frame, one column per object.
        vision_pos (`torch.Tensor` of shape `(HW, N or 1, C)`):
            Their position encoding.
        concept (`torch.Tensor` of shape `(N, 256)`):
            One concept embedding per object.

    Returns:
        `torch.Tensor` of shape `(N, HW, C)`: the concept-conditioned features, batch first.
    """
    num_objects = vision_feats.shape[1]
    if concept.shape != (num_objects, CONCEPT_DIM):
        raise ValueError(f"concept must be [{num_objects}, {CONCEPT_DIM}], got {list(concept.shape)}")
    mem_dim = token_attn.layers[0].cross_attn_image.k_proj.in_features
    tokens = concept.reshape(num_objects, CONCEPT_DIM // mem_dim, mem_dim).transpose(0, 1)
    tokens = tokens.to(vision_feats.dtype)
    out = token_attn(
        current_vision_features=vision_feats,
        current_vision_position_embeddings=vision_pos,
        memory=tokens,
        memory_posision_embeddings=torch.zeros_like(tokens),
        num_object_pointer_tokens=tokens.shape[0],
    )
    return out[0]
