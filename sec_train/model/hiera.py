"""SAM 2's image encoder without three costs transformers pays for nothing.

- transformers' `Sam2MultiScaleAttention.forward` (5.x) first computes `softmax((q * scale) @
  k^T)` with the head axis last (a [tokens, heads, heads] tensor) and never uses it: the
  attention itself is the attention function's.
- Each Hiera MLP writes its GELU into a fresh tensor (4x the block's width: 2.2 GB per 1024 px
  frame over SAM 2.1-L's 48 blocks), and a fresh large tensor costs its page faults on every
  call (a [16384, 1152] GELU: 53 ms fresh against 18 ms in place, one CPU thread). Without
  autograd the activation can overwrite its input, as it does here.
- The FPN neck builds the sine position encoding of every level on every call (0.7 s per frame
  at 1024 px on one CPU thread, 16.7 M values at the 256x256 level): its one-entry cache is
  keyed on the shape, which changes from level to level. Meta's `PositionEmbeddingSine` keeps
  one per shape; so does `PositionEncodingCache`.

`lean_image_encoder` runs an encoder with all three removed (the same outputs, bit for bit) and puts
the modules' own forwards back afterwards.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator

import torch
from torch import nn
from transformers.activations import GELUActivation
from transformers.models.sam2.modeling_sam2 import (
    ALL_ATTENTION_FUNCTIONS,
    Sam2FeedForward,
    Sam2MultiScaleAttention,
    Sam2SinePositionEmbedding,
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


def _feed_forward(self: Sam2FeedForward, hidden_states: torch.Tensor) -> torch.Tensor:
    """`Sam2FeedForward.forward` (an exact-GELU MLP) with the activation in place when no
    gradient is recorded."""
    if torch.is_grad_enabled() or self.sigmoid_output:
        return type(self).forward(self, hidden_states)
    hidden_states = torch.ops.aten.gelu_(self.proj_in(hidden_states))
    for layer in self.layers:
        hidden_states = torch.ops.aten.gelu_(layer(hidden_states))
    return self.proj_out(hidden_states)


class PositionEncodingCache:
    """Sine position encodings by (channels, height, width, device, dtype), computed once for one
    frame and expanded to the batch; a drop-in `forward` for `Sam2SinePositionEmbedding`."""

    def __init__(self) -> None:
        self._encodings: dict[tuple, torch.Tensor] = {}

    def forward_for(self, module: Sam2SinePositionEmbedding) -> Callable[..., torch.Tensor]:
        compute = type(module).forward.__get__(module)

        def forward(shape, device, dtype, mask=None) -> torch.Tensor:
            if mask is not None:  # a padding mask makes the encoding per image
                return compute(shape, device, dtype, mask)
            key = (*shape[1:], str(device), dtype, id(module))
            if key not in self._encodings:
                self._encodings[key] = compute((1, *shape[1:]), device, dtype)
            return self._encodings[key].expand(shape[0], -1, -1, -1)

        return forward


def _is_exact_gelu(activation: nn.Module) -> bool:
    return type(activation) is GELUActivation and activation.act is nn.functional.gelu


@contextlib.contextmanager
def _patched(forwards: dict[nn.Module, Callable]) -> Iterator[None]:
    """Within the block each module runs the given forward; a forward set on the instance before
    (e.g. by a hook library) is put back as it was."""
    previous = {module: module.__dict__.get("forward") for module in forwards}
    for module, forward in forwards.items():
        module.forward = forward
    try:
        yield
    finally:
        for module, forward in previous.items():
            if forward is None:
                del module.forward
            else:
                module.forward = forward


def lean_image_encoder(
    encoder: nn.Module, encodings: PositionEncodingCache
) -> contextlib.AbstractContextManager[None]:
    """Within the block, `encoder` skips the unused Hiera attention weights, applies its MLPs'
    exact GELUs in place at inference and takes its neck's position encodings from `encodings`."""
    forwards: dict[nn.Module, Callable] = {}
    for module in encoder.modules():
        if isinstance(module, Sam2MultiScaleAttention):
            forwards[module] = types.MethodType(_attention, module)
        elif isinstance(module, Sam2FeedForward) and _is_exact_gelu(module.activation):
            forwards[module] = types.MethodType(_feed_forward, module)
        elif isinstance(module, Sam2SinePositionEmbedding):
            forwards[module] = encodings.forward_for(module)
    return _patched(forwards)
