"""`launch/demo_table.py`'s ablations undo exactly one part of the trained concept path, for the
block only: the concept (zeroed) or `token_attn` (back to the memory attention it starts from);
split over `torchrun`'s processes, it writes the table one process does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_tools.synth import synthesize
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.weights import save_model_dir
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


def test_torchrun_split_writes_the_one_process_table(tmp_path, trained):
    """Two processes score every other video each (sharing scene changes between passes) and
    gather: the same JSON as one process, per-video post-cut J included; only the first reports
    its passes and progress, so the terminal shows one bar at a time."""
    synthesize(tmp_path / "val", 3, seed=3, frames=8, height=48, width=64, objects=1, concept_cut=True)
    save_model_dir(trained, tmp_path / "model")
    root = Path(__file__).resolve().parents[1]
    args = [
        "launch/demo_table.py",
        "--data",
        str(tmp_path / "val" / "shards"),
        "--trained",
        str(tmp_path / "model"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = [sys.executable, *args, "--ablation", "--json", str(tmp_path / "one.json")]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    two += ["--ablation", "--json", str(tmp_path / "two.json")]
    runs = [
        subprocess.run(c, cwd=root, env=env, check=True, capture_output=True, text=True, timeout=600)
        for c in (one, two)
    ]
    passes = ["untrained, SAM 2 only", "untrained, SeC", "trained, SAM 2 only", "trained, SeC"]
    passes += ["trained, SeC, concept zeroed", "trained, SeC, token_attn untrained"]
    for run in runs:
        assert [line[4:] for line in run.stderr.splitlines() if line.startswith("--- ")] == passes
        assert run.stderr.count("eval: 0video [") == len(passes)  # each bar starts at 0 once
    one_process, two_processes = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert two_processes["trained"]["post_cut_j"]["sec"].keys() == {"synth00000", "synth00001", "synth00002"}
    assert _close(two_processes, one_process)


def _close(a, b) -> bool:
    """Nested dicts of floats equal up to summation order."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == pytest.approx(b, abs=1e-12)
