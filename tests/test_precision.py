"""Training precision: stage 1 as SAM 2's trainer (fp32 weights, bf16 autocast, fp32 mask logits
for the loss) under DeepSpeed; stage 2 with DeepSpeed's bf16 weights as SeC's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from data_tools.synth import synthesize
from sec_train.train import accel
from sec_train.train.accel import DEEPSPEED_CONFIGS, deepspeed_config, mixed_precision, resolve_precision
from sec_train.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]

# One stage-1 step of the toy recipe under the launcher's DeepSpeed, recording the dtypes a
# memory-attention projection sees and the logits the loss gets.
STEP = """
import json, sys
import torch
import sec_train.model.stage1 as stage1
from sec_train.train.config import load_config
from sec_train.train.loop import Trainer, build_train_loader

cfg = load_config("configs/toy_stage1.yaml", sys.argv[2:])
trainer = Trainer(cfg)
seen = {}
linear = next(m for m in trainer.unwrapped.sam2.memory_attention.modules() if isinstance(m, torch.nn.Linear))

def record(module, args, output):
    seen.setdefault("weight", str(module.weight.dtype))
    seen.setdefault("input", str(args[0].dtype))
    seen.setdefault("output", str(output.dtype))

linear.register_forward_hook(record)
losses = stage1.multimask_losses

def recording_losses(logits, *args, **kwargs):
    seen["loss_logits"] = str(logits.dtype)
    seen["loss_logits_shape"] = list(logits.shape)
    return losses(logits, *args, **kwargs)

stage1.multimask_losses = recording_losses
batch = next(iter(build_train_loader(cfg, trainer.unwrapped)))
while trainer.train_step(batch) is None:
    pass
seen["trainable"] = sorted({str(p.dtype) for p in trainer.model.parameters() if p.requires_grad})
seen["deepspeed_bf16"] = trainer.model.bfloat16_enabled()
open(sys.argv[1], "w").write(json.dumps(seen))
"""


def test_auto_is_fp32_autocast_for_stage1_and_bf16_for_stage2_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_precision(load_config("configs/sec_stage1.yaml")) == "fp32_autocast_bf16"
    assert resolve_precision(load_config(None, ["model.mode=stage1"])) == "fp32_autocast_bf16"
    assert resolve_precision(load_config("configs/sec_stage2.yaml")) == "bf16"
    assert resolve_precision(load_config(None, ["model.mode=stage1", "precision=bf16"])) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision(load_config(None, ["model.mode=stage1"])) == "fp32"


def test_fp32_autocast_keeps_deepspeed_in_fp32_and_autocasts_the_forward():
    cfg = load_config(None, ["precision=fp32_autocast_bf16"])
    ds = deepspeed_config(cfg, str(DEEPSPEED_CONFIGS / "zero2.json"), nn.Linear(4, 4), world_size=1)
    assert ds["bf16"]["enabled"] is False and mixed_precision(cfg) == "no"
    with accel.forward_autocast(cfg, torch.device("cpu")):
        assert (nn.Linear(4, 4)(torch.randn(2, 4))).dtype == torch.bfloat16
    with accel.forward_autocast(load_config(None, ["precision=bf16"]), torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.slow
def test_stage1_step_under_deepspeed_has_fp32_weights_bf16_matmuls_fp32_logits(tmp_path):
    synthesize(tmp_path / "synth", 2, frames=6, height=48, width=48, objects=2, shard_bytes=20_000)
    script, result = tmp_path / "step.py", tmp_path / "seen.json"
    script.write_text(STEP)
    overrides = [
        "precision=fp32_autocast_bf16", "deepspeed=configs/deepspeed/zero2.json",
        f"data.train=[{tmp_path / 'synth' / 'shards'}]", "data.val=null", "data.num_workers=0",
        "batch_size=1", "max_steps=1", "wandb.mode=disabled", f"out_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"), "--num_processes", "1",
        str(script), str(result), *overrides,
    ]  # fmt: skip
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "WANDB_MODE": "offline"}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-4000:]
    seen = json.loads(result.read_text())
    assert seen["deepspeed_bf16"] is False and seen["trainable"] == ["torch.float32"]
    assert seen["weight"] == "torch.float32" and seen["output"] == "torch.bfloat16"
    assert seen["loss_logits"] == "torch.float32" and seen["loss_logits_shape"][-2:] == [128, 128]
