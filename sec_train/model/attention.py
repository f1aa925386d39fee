"""Attention with dropout that stays memory-efficient on CPU.

SAM 2's memory attention trains with attention dropout 0.1. On CUDA, `scaled_dot_product_attention`
has fused kernels that apply dropout; on CPU only its math kernel does, and that kernel keeps the
whole fp32 attention matrix and the dropout mask for backward: with a 22-frame memory at 64x64,
4,096 queries x ~90,000 keys, 1.5 GB per layer, frame and object. `dropout_attention` computes the
same attention chunk by chunk over the queries and keeps only q, k and v for backward, which
recomputes each chunk's probabilities and regenerates its dropout mask from a seed (drawn from
torch's global generator, so the masks follow the run's seed, and activation checkpointing's
recomputation, which restores the RNG state, draws the same ones).

`use_cpu_dropout_attention(sam2)` routes a SAM 2's attention through it where it matters (on CPU,
with dropout); everywhere else the attention is transformers' SDPA unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

CPU_DROPOUT_ATTENTION = "sdpa_cpu_dropout"
# fp32 elements of one chunk's score matrix (32 MB): backward holds about six such tensors at once
CHUNK_ELEMENTS = 2**23


_LEVELS = 2**16  # a weight drops when its 16 random bits fall below round(p * 2**16)


def drop_share(p: float) -> float:
    """The probability a weight drops with `keep_mask(..., p)`: p rounded to a multiple of 2**-16."""
    return round(p * _LEVELS) / _LEVELS


def keep_mask(shape: torch.Size, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean mask of `shape`, True (kept) with probability 1 - `drop_share(p)`, drawn from
    `generator` as 16 random bits per value out of 64-bit integers (2.5x faster than `bernoulli_`
    into a boolean tensor on CPU)."""
    numel = shape.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, (-(-numel // 4),), dtype=torch.int64, generator=generator)
    return bits.view(torch.int16)[:numel].view(shape) >= round(p * _LEVELS) - _LEVELS // 2


def chunk_mask(seed: int, index: int, shape: torch.Size, dropout_p: float) -> torch.Tensor:
    """The dropout mask of chunk `index` (True = kept), the same on every call with the same
    arguments; a weight drops with probability `drop_share(dropout_p)`."""
    return keep_mask(shape, dropout_p, torch.Generator().manual_seed(seed + index))


def _probs(query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax over the keys in fp32 of a chunk of queries (the matmul runs in the inputs' dtype)."""
    return torch.softmax(torch.matmul(query, key.transpose(-1, -2)).float() * scale, dim=-1)


class _DropoutAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, dropout_p, scale, seed, chunk):
        keep_scale = 1 / (1 - drop_share(dropout_p))
        out = query.new_empty(*query.shape[:-1], value.shape[-1])
        for index, start in enumerate(range(0, query.shape[-2], chunk)):
            probs = _probs(query[..., start : start + chunk, :], key, scale)
            kept = chunk_mask(seed, index, probs.shape, dropout_p)
            dropped = probs.mul_(kept).mul_(keep_scale).to(value.dtype)
            out[..., start : start + chunk, :] = torch.matmul(dropped, value)
        ctx.save_for_backward(query, key, value)
        ctx.dropout_p, ctx.scale, ctx.seed, ctx.chunk = dropout_p, scale, seed, chunk
        ctx.keep_scale = keep_scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value = ctx.saved_tensors
        grad_q = torch.empty_like(query)
        grad_k = torch.zeros_like(key, dtype=torch.float32)
        grad_v = torch.zeros_like(value, dtype=torch.float32)
        for index, start in enumerate(range(0, query.shape[-2], ctx.chunk)):
            rows = slice(start, start + ctx.chunk)
            q, g = query[..., rows, :], grad_out[..., rows, :]
            probs = _probs(q, key, ctx.scale)
            kept = chunk_mask(ctx.seed, index, probs.shape, ctx.dropout_p)
            dropped = (probs * kept * ctx.keep_scale).to(value.dtype)
            grad_v += torch.matmul(dropped.transpose(-1, -2), g)
            grad_probs = torch.matmul(g, value.transpose(-1, -2)).float().mul_(kept).mul_(ctx.keep_scale)
            # softmax backward: P * (dP - rowsum(dP * P)), then the score scale
            row = (grad_probs * probs).sum(-1, keepdim=True)
            grad_scores = probs.mul_(grad_probs.sub_(row)).mul_(ctx.scale).to(query.dtype)
            grad_q[..., rows, :] = torch.matmul(grad_scores, key)
            grad_k += torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k.to(key.dtype), grad_v.to(value.dtype), None, None, None, None


def dropout_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    dropout_p: float,
    scale: float | None = None,
    seed: int | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """softmax(q k^T * scale) with dropout, times v, chunked over the queries so that backward
    keeps q, k and v only (no attention matrix).

    Args:
        query (`torch.Tensor` of shape `(..., L, D)`), key (`(..., S, D)`), value (`(..., S, Dv)`):
            the same leading dimensions (no broadcasting).
        dropout_p (`float`): probability of dropping an attention weight, in [0, 1).
        scale (`float`, *optional*): defaults to D ** -0.5, as in SDPA.
        seed (`int`, *optional*): the masks' seed; default drawn from torch's global generator.
        chunk_elements (`int`, *optional*): score elements per chunk (queries x keys x batch).

    Returns:
        `torch.Tensor` of shape `(..., L, Dv)`.
    """
    if query.shape[:-2] != key.shape[:-2] or key.shape[:-1] != value.shape[:-1]:
        raise ValueError(
            f"dropout_attention needs matching q/k/v leading shapes, got {list(query.shape)}, "
            f"{list(key.shape)}, {list(value.shape)}"
        )
    if not 0 <= dropout_p < 1:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()))
    rows = max(1, chunk_elements // max(1, key.shape[:-1].numel()))
    return _DropoutAttention.apply(query, key, value, dropout_p, scale, seed, rows)


def sdpa_with_cpu_dropout(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function: `dropout_attention` for unmasked, non-causal attention
    with dropout on CPU, transformers' SDPA otherwise."""
    plain = attention_mask is None and not is_causal and query.shape[:-2] == key.shape[:-2]
    if dropout > 0 and query.device.type == "cpu" and plain:
        out = dropout_attention(query, key, value, dropout, scaling)
        return out.transpose(1, 2).contiguous(), None
    kwargs.update(dropout=dropout, scaling=scaling, is_causal=is_causal)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(CPU_DROPOUT_ATTENTION, sdpa_with_cpu_dropout)


def use_cpu_dropout_attention(model: torch.nn.Module) -> None:
    """Routes the attention of `model` (a transformers model or module holding its `config`), and
    of its sub-configs, through `sdpa_with_cpu_dropout` when it uses SDPA; another choice (eager,
    flash) is kept. Not saved with the config."""
    if model.config._attn_implementation == "sdpa":
        model.config._attn_implementation = CPU_DROPOUT_ATTENTION
