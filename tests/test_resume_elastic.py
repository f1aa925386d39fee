"""Elastic resume under `accelerate launch` with DeepSpeed on CPU: 2 processes -> 1 -> 2.

Per case, one chain of three runs over one epoch of 8 one-object videos (8 units in both
stages): 2 processes train step 1, 1 process resumes for step 2 (grad_accum 1 -> 2 keeps the
global batch of 2), 2 processes resume for steps 3-4 (back to grad_accum 1). Each run records
what every process consumed and, right after restoring, whether the trainable weights equal the
checkpoint's. The epoch must be consumed exactly once over the three runs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from data_tools.synth import synthesize
from sec_train.data.format import read_index

ROOT = Path(__file__).resolve().parents[1]

# Runs the trainer, recording (epoch, keys) of every micro-batch per process, and comparing the
# trainable weights right after `restore` with the files the checkpoint holds.
RECORDER = """
import json, os, sys
import torch
from safetensors.torch import load_file
import sec_train.train.loop as loop
from sec_train.train.__main__ import main
from sec_train.train.checkpoint import _gathered_trainable
from sec_train.model.weights import ADAPTER_DIR, ADAPTER_WEIGHTS, TRAINABLE_FILE, adapter_state_dict

step, restore = loop.Trainer.train_step, loop.Trainer.restore

def recording_step(self, batch):
    record = {"epoch": self.loader.epoch, "keys": list(batch.keys)}
    name = f"consumed_rank{self.accelerator.process_index}.jsonl"
    with open(os.path.join(self.cfg.out_dir, name), "a") as f:
        f.write(json.dumps(record) + "\\n")
    return step(self, batch)

def checking_restore(self, path):
    restore(self, path)
    model = self.unwrapped
    with _gathered_trainable(self.accelerator, model):
        live = {n: p.detach().clone() for n, p in model.named_parameters()}
        adapter = adapter_state_dict(model.lvlm) if model.lora_config is not None else {}
    saved = load_file(os.path.join(path, TRAINABLE_FILE))
    differ = [n for n, t in saved.items() if not torch.equal(live[n], t)]
    if adapter:
        saved_adapter = load_file(os.path.join(path, ADAPTER_DIR, ADAPTER_WEIGHTS))
        differ += [n for n, t in saved_adapter.items() if not torch.equal(adapter[n], t)]
        saved = {**saved, **saved_adapter}
    if self.accelerator.is_main_process:
        report = {"compared": len(saved), "differ": differ}
        with open(os.path.join(self.cfg.out_dir, "restored.json"), "w") as f:
            json.dump(report, f)

loop.Trainer.train_step, loop.Trainer.restore = recording_step, checking_restore
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, 8, frames=8, height=48, width=48, objects=1, shard_bytes=20_000)
    return out / "shards"


def _launch(recorder: Path, processes: int, args: list[str]) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"), "--num_processes", str(processes),
        str(recorder), *args,
    ]  # fmt: skip
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "WANDB_MODE": "offline"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)


def _losses(out_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "zero"), [("toy_stage1", 2), ("toy_stage2", 3)])
def test_two_to_one_to_two_processes_consume_the_epoch_once_and_keep_the_weights(
    recipe, zero, shards, tmp_path
):
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    out = tmp_path / "run"
    args = [
        "--config", f"configs/{recipe}.yaml", f"deepspeed=configs/deepspeed/zero{zero}.json",
        f"data.train=[{shards}]", "data.val=null", "data.num_workers=1", "batch_size=1", "grad_accum=1",
        "save_every=1", "log_every=1", "wandb.mode=disabled", f"out_dir={out}", "resume=auto",
    ]  # fmt: skip
    for processes, max_steps, grad_accum in [(2, 1, 1), (1, 2, 2), (2, 4, 1)]:
        (out / "restored.json").unlink(missing_ok=True)
        run = _launch(recorder, processes, [*args, f"max_steps={max_steps}"])
        assert run.returncode == 0, run.stderr[-4000:]
        log = run.stdout + run.stderr
        if max_steps > 1:
            assert f"on {processes} processes" in log
            assert f"grad_accum 1 -> {grad_accum}" in log or grad_accum == 1
            assert "to DeepSpeed's universal format (once)" in log
            restored = json.loads((out / "restored.json").read_text())
            assert restored["compared"] and restored["differ"] == [], restored
        losses = _losses(out)
        assert sorted(losses) == list(range(1, max_steps + 1))
        assert all(math.isfinite(loss) for loss in losses.values())

    consumed = [
        key
        for file in out.glob("consumed_rank*.jsonl")
        for line in file.read_text().splitlines()
        for key in json.loads(line)["keys"]
        if json.loads(line)["epoch"] == 0
    ]
    keys = [k for shard in read_index(shards)["shards"] for k in shard["keys"]]
    assert len(consumed) == 8 and Counter(consumed) == Counter(
        k if recipe == "toy_stage1" else f"{k}/1" for k in keys
    )
    meta = json.loads((out / "checkpoints" / "step-00000004" / "meta.json").read_text())
    recorded = {k: meta[k] for k in ("num_processes", "global_batch", "launcher", "zero_stage")}
    assert recorded == {
        "num_processes": 2,
        "global_batch": 2,
        "launcher": "deepspeed",
        "zero_stage": zero,
    }
