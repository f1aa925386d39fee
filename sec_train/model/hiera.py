"""Hiera's multi-scale attention without transformers' discarded attention weights.

transformers' `Sam2MultiScaleAttention.forward` (5.x) first computes `softmax((q * scale) @ k^T)`
with the head axis last (a [tokens, heads, heads] tensor) and never uses it: the attention
itself is the attention function's. Its output is the same without that step; `lean_attention`
runs an image encoder with every such module's forward minus it, and puts the modules' own
forwards back afterwards.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from torch import nn
from transformers.models.sam2.modeling_sam2 import (
    ALL_ATTENTION_FUNCTIONS,
    Sam2MultiScaleAttention,
    do_pool,
    eager_attention_forward,
)


def _attention(self: Sam2MultiScaleAttention, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
    """`Sam2MultiScaleAttention.forward` without the unused `attn_weights`."""
    batch_size, height, width, _ = hidden_states.shape
    qkv = self.qkv(hidden_states).reshape(batch_size, height * width, 3, self.num_attention_heads, -1)
    query, key, value = torch.unbind(qkv, 2)
    if self.query_stride:  # Q pooling at a stage change
        query = do_pool(query.reshape(batch_size, height, width, -1), self.query_stride)
        height, width = query.shape[1:3]
        query = query.reshape(batch_size, height * width, self.num_attention_heads, -1)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(
        self.config._attn_implementation, eager_attention_forward
    )
    out, _ = attention(
        self,
        query.transpose(1, 2),
        key.transpose(1, 2),
        value.transpose(1, 2),
        attention_mask=None,
        is_causal=self.is_causal,
        scaling=self.scale,
        **kwargs,
    )
    return self.proj(out.reshape(batch_size, height, width, -1))


@contextlib.contextmanager
def lean_attention(encoder: nn.Module) -> Iterator[None]:
    """Within the block, `encoder`'s Hiera attention modules skip the unused attention weights."""
    modules = [m for m in encoder.modules() if isinstance(m, Sam2MultiScaleAttention)]
    # a forward set on the instance (e.g. by a hook library) is put back as it was
    previous = [m.__dict__.get("forward") for m in modules]
    for module in modules:
        module.forward = types.MethodType(_attention, module)
    try:
        yield
    finally:
        for module, forward in zip(modules, previous):
            if forward is None:
                del module.forward
            else:
                module.forward = forward
