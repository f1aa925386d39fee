"""`dropout_attention` (chunked attention with dropout for CPU training) against PyTorch's SDPA
and against attention written out with the same dropout mask; and that SAM 2's memory attention
routed through it keeps no attention matrix for backward."""

import pytest
import torch
import torch.nn.functional as F
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoMemoryAttention

from sec_train.model.attention import (
    CPU_DROPOUT_ATTENTION,
    chunk_mask,
    drop_share,
    dropout_attention,
    keep_mask,
    use_cpu_dropout_attention,
)
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.sam2 import toy_sam2_config


def _qkv(dtype: torch.dtype, queries: int = 50, keys: int = 70) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(2, 3, queries, 32), (2, 3, keys, 32), (2, 3, keys, 16)]
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]


def _grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return [out, *torch.autograd.grad(out, inputs, grad_out.to(out.dtype))]


# 7 query rows per chunk: 50 queries make 8 chunks, the last one short
CHUNK = 2 * 3 * 70 * 7


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_no_dropout_equals_sdpa(dtype, tol):
    """Without dropout: SDPA's output and gradients, in fp32 and (within bf16 rounding) in bf16."""
    inputs = _qkv(dtype)
    ours = _grads(dropout_attention(*inputs, 0.0, chunk_elements=CHUNK), inputs)
    reference = _grads(F.scaled_dot_product_attention(*(t.float() for t in inputs)), inputs)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


def test_dropout_equals_attention_with_the_same_mask():
    """With dropout 0.3: the output and all three gradients equal attention written out by hand
    (softmax, mask, rescale, times v) with the chunks' masks, so backward regenerated them."""
    p, seed, rows = 0.3, 1234, 7
    inputs = _qkv(torch.float32)
    ours = _grads(dropout_attention(*inputs, p, seed=seed, chunk_elements=CHUNK), inputs)
    q, k, v = inputs
    probs = torch.softmax(q @ k.transpose(-1, -2) * 32**-0.5, dim=-1)
    mask = torch.cat([chunk_mask(seed, i, probs[..., :rows, :].shape, p) for i in range(7)], dim=-2)
    last = chunk_mask(seed, 7, probs[..., 49:, :].shape, p)
    mask = torch.cat([mask, last], dim=-2)
    dropped_share = round(p * 2**16) / 2**16
    reference = _grads((probs * mask / (1 - dropped_share)) @ v, inputs)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_keep_mask_drops_its_share():
    shape = torch.Size([4, 1000, 250])
    mask = keep_mask(shape, 0.1, torch.Generator().manual_seed(7))
    assert mask.dtype == torch.bool and mask.shape == shape
    assert abs(1 - mask.float().mean().item() - 0.1) < 0.002  # 1e6 draws: sd 3e-4
    assert abs(drop_share(0.1) - 0.1) < 1e-5


def test_chunk_masks_follow_the_seed():
    shape = torch.Size([4, 1000, 250])
    mask = chunk_mask(7, 0, shape, 0.1)
    assert torch.equal(mask, chunk_mask(7, 0, shape, 0.1))
    assert not torch.equal(mask, chunk_mask(7, 1, shape, 0.1))
    # the masks come from a seed drawn from torch's global generator, so a seeded run repeats
    inputs = _qkv(torch.float32)
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append(dropout_attention(*inputs, 0.5))
    assert torch.equal(*runs)


def _saved_bytes(fn) -> int:
    sizes = {}

    def pack(tensor):
        sizes[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes.values())


def test_memory_attention_keeps_no_attention_matrix():
    """SAM 2's memory attention in training (dropout 0.1), 1,024 queries over 2,048 memory tokens,
    2 layers: through SDPA on CPU it saves every layer's fp32 self- and cross-attention matrix for
    backward; routed through `sdpa_with_cpu_dropout` it saves none of them."""
    config = toy_sam2_config()
    config.memory_attention_rope_feat_sizes = [32, 32]
    config._attn_implementation = "sdpa"  # what a Sam2VideoModel sets up
    attention = Sam2VideoMemoryAttention(config).train()
    features, memory = torch.randn(1024, 1, 128), torch.randn(2048, 1, 64)

    def forward():
        attention(features, memory, torch.zeros_like(features), torch.zeros_like(memory))

    sdpa = _saved_bytes(forward)
    use_cpu_dropout_attention(attention)
    assert attention.config._attn_implementation == CPU_DROPOUT_ATTENTION
    matrices = 2 * (1024 * 1024 + 1024 * 2048) * 4
    assert sdpa - _saved_bytes(forward) >= matrices


def test_sec_model_routes_sam2_and_token_attn():
    model = build_sec_model(ModelConfig())
    assert model.sam2.config._attn_implementation == CPU_DROPOUT_ATTENTION
    assert model.token_attn.config._attn_implementation == CPU_DROPOUT_ATTENTION
