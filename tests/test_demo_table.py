"""`launch/demo_table.py`'s ablations undo exactly one part of the trained concept path, for the
block only: the concept (zeroed) or `token_attn` (back to the memory attention it starts from)."""

from __future__ import annotations

import pytest
import torch

from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from tests.launch_scripts import load_launch_script
from tests.sec_toy_batches import single_thread, stage2_batch  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained():
    """A toy SeC whose `token_attn` and concept head moved away from where stage 2 starts them."""
    model = build_sec_model(ModelConfig(mode="concept_only"))
    with torch.no_grad():
        for p in [*model.token_attn.parameters(), *model.text_hidden_fcs.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    return model


def _states(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_untrained_token_attn_is_the_memory_attention_inside_and_the_trained_one_after(trained):
    table = load_launch_script("demo_table")
    before, memory = _states(trained.token_attn), _states(trained.sam2.memory_attention)
    assert any(not torch.equal(before[k], memory[k]) for k in before)
    with table.untrained_token_attn(trained):
        assert all(torch.equal(v, memory[k]) for k, v in trained.token_attn.state_dict().items())
    assert all(torch.equal(v, before[k]) for k, v in trained.token_attn.state_dict().items())
    assert all(torch.equal(v, memory[k]) for k, v in trained.sam2.memory_attention.state_dict().items())


def test_zeroed_concept_zeroes_the_concept_only_inside(trained):
    table = load_launch_script("demo_table")
    batch = stage2_batch(trained, refs=(1,), sam_frames=(1,))
    args = (batch.lvlm_images, batch.input_ids, batch.attention_mask, batch.lvlm_frames_per_sample)
    with torch.no_grad():
        concept = trained.concept_embedding(*args)
        with table.zeroed_concept(trained):
            assert torch.equal(trained.concept_embedding(*args), torch.zeros_like(concept))
        assert torch.equal(trained.concept_embedding(*args), concept) and concept.abs().sum() > 0


def test_the_table_has_a_row_per_ablation():
    table = load_launch_script("demo_table")
    row = {"J&F": 0.5, "J&F_post_cut": 0.25, "J": 0.5, "F": 0.5, "lvlm_calls": 3}
    rows = {"sam2_only": row, "sec": row, **{k: row for k in table.ABLATIONS}, "concept_only_iou": 0.375}
    text = table.format_table({"trained": rows})
    for name, _ in table.ABLATIONS.values():
        assert f"| trained | {name} | 50.0 | 25.0 | 50.0 | 50.0 | 3 |" in text
    assert "(no memory) x100: trained 37.5" in text
