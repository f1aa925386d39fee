"""`FastCPUDropout` (SeC's CPU dropout) against the definition of dropout: each value kept with
probability 1 - p and scaled by 1 / (1 - p), the gradient masked the same way, identity in eval."""

import torch
from torch import nn

from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.dropout import FastCPUDropout, drop_share, keep_mask, use_fast_cpu_dropout
from sec_train.model.trainable import apply_trainable


def test_keep_mask_drops_its_share_and_follows_the_generator():
    shape = torch.Size([4, 1000, 250])
    mask = keep_mask(shape, 0.1, torch.Generator().manual_seed(7))
    assert mask.dtype == torch.bool and mask.shape == shape
    assert abs(1 - mask.float().mean().item() - 0.1) < 0.002  # 1e6 draws: sd 3e-4
    assert torch.equal(mask, keep_mask(shape, 0.1, torch.Generator().manual_seed(7)))
    assert drop_share(0.05) == round(0.05 * 2**16) / 2**16 and abs(drop_share(0.05) - 0.05) < 1e-5


def test_fast_dropout_is_dropout():
    dropout = nn.Dropout(0.3)
    assert use_fast_cpu_dropout(nn.Sequential(dropout, nn.Dropout(0.0))) == 1  # p = 0 stays plain
    assert type(dropout) is FastCPUDropout and dropout.p == 0.3
    x = (torch.rand(200, 300) + 0.5).requires_grad_()
    torch.manual_seed(3)
    y = dropout(x)
    kept = y != 0
    scale = 1 / (1 - drop_share(0.3))
    torch.testing.assert_close(y[kept], x[kept] * scale)
    assert abs(kept.float().mean().item() - 0.7) < 0.01  # 6e4 draws: sd 2e-3
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    torch.testing.assert_close(grad, kept.float() * scale)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), y)  # the masks follow torch's seed (checkpoint recomputation)
    assert torch.equal(dropout.eval()(x), x)
    assert dropout(x.bfloat16()).dtype == torch.bfloat16


def test_sec_model_uses_it_for_sam2_and_lora():
    model = build_sec_model(ModelConfig())
    apply_trainable(model, ModelConfig().trainable)
    plain = [n for n, m in model.named_modules() if type(m) is nn.Dropout and m.p > 0]
    fast = [n for n, m in model.named_modules() if type(m) is FastCPUDropout]
    assert not plain
    assert any("lora_dropout" in n for n in fast) and any(n.startswith("sam2.memory_attention") for n in fast)
    assert any(n.startswith("token_attn") for n in fast)
