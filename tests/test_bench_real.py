"""Real widths on CPU: one training step of the real stage-2 recipe at InternVL 2.5-4B / SAM 2.1-L
widths (2 layers deep, a small batch) through the Trainer and DeepSpeed, and the memory
planner's state accounting against what DeepSpeed really allocates."""

import json
import math
import os
import subprocess
import sys

import pytest

from sec_train.bench.model import summary_line
from sec_train.train.config import load_config
from sec_train.train.plan import state_bytes

pytestmark = pytest.mark.slow
ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}

# Qwen2.5-3B (hidden 2048, MLP 11008, 2 KV heads of 128) with LoRA r=128 on q, k, v, o, gate, up,
# down: r x (in + out) per projection
LORA_PER_LAYER = 128 * ((2048 + 2048) + 2 * (2048 + 256) + (2048 + 2048) + 3 * (2048 + 11008))
TEXT_HIDDEN_FCS = 2048 * 2048 + 2048 + 2048 * 256 + 256
# InternVL 2.5-4B's projector: LayerNorm(4096), Linear(4096 -> 2048), Linear(2048 -> 2048)
PROJECTOR = 2 * 4096 + 4096 * 2048 + 2048 + 2048 * 2048 + 2048


def _json_line(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=ENV, check=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("zero", [2, 3])
def test_planner_state_equals_deepspeed_allocation(zero):
    """Weights and optimizer state of a toy model, as ZeRO-2/3 hold them in bf16, byte for byte."""
    run = _json_line([sys.executable, "-m", "tests.deepspeed_state", str(zero)])
    planned = state_bytes(run["total"], run["trainable"], weight=2, zero=zero, gpus=1)
    assert run["held"]["weights"] == planned["weights"]
    assert run["held"]["optimizer"] == planned["optimizer"]
    if zero == 3:  # ZeRO-3 keeps its gradient partitions in one persistent buffer
        assert run["held"]["gradients_persistent"] == planned["gradients"]


def test_real_width_stage2_step():
    """sec_stage2 (concept-only) at real widths, 2 layers, one sample with one reference frame."""
    result = _json_line(
        [
            sys.executable, "-m", "sec_train.bench", "model", "--device", "cpu", "--recipe", "sec_stage2",
            "--zero", "2", "--layers", "2", "--steps", "1", "--json",
            "model.trainable.embeddings=false", "data.stage2.max_refs=1", "data.stage2.max_context=2",
        ]
    )  # fmt: skip
    expected = {"lora": 2 * LORA_PER_LAYER, "text_hidden_fcs": TEXT_HIDDEN_FCS}
    if load_config("configs/sec_stage2.yaml", []).model.trainable.projector:
        expected["lvlm.model.multi_modal_projector"] = PROJECTOR
    assert result["trainable"] == expected
    assert result["batch"]["lvlm_frames"] == 2 and result["batch"]["llm_tokens"] > 2 * 256
    assert len(result["losses"]) == 2 and all(math.isfinite(x) for x in result["losses"])
    assert result["step_flops"] > 0 and result["memory_gib"]["peak"] > 1.5  # bf16 weights alone ~1.9 GB
    assert summary_line(result).startswith("sec_stage2  zero2  2 layers  batch 1")  # gpu_check's line
