"""Exact resume under `accelerate launch` with 2 CPU processes and DeepSpeed ZeRO-2 / ZeRO-3.

Per ZeRO stage: one uninterrupted run of 2N steps; one run killed (SIGKILL) while it writes the
checkpoint of step 2N, which must leave step N as `latest`; then `resume=auto` for the last N
steps. The loss of every step and the final trainable weights must match bitwise: on CPU with
gloo every reduction runs in the same order, and RNG, optimizer, scheduler and data position
are all restored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_tools.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
N = 2

# Runs the trainer, but SIGKILLs the main process just before it publishes the named checkpoint:
# its files are written into the temporary directory, nothing is renamed yet.
KILLER = """
import os, signal, sys
import sec_train.train.checkpoint as checkpoint
from sec_train.train.__main__ import main

publish = checkpoint._publish

def killing_publish(tmp, final, keep_last):
    if final.name == os.environ["KILL_AT_CHECKPOINT"]:
        os.kill(os.getpid(), signal.SIGKILL)
    publish(tmp, final, keep_last)

checkpoint._publish = killing_publish
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, 4, frames=8, height=48, width=48, objects=2, shard_bytes=20_000)
    return out / "shards"


def _launch(script: list[str], args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"), *script, *args,
    ]  # fmt: skip
    child_env = {**os.environ, "DS_ACCELERATOR": "cpu", "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run(command, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=400)


def _losses(out_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["toy_stage1", "toy_stage2"])
@pytest.mark.parametrize("zero", [2, 3])
def test_kill_and_resume_match_an_uninterrupted_run(zero, recipe, shards, tmp_path):
    args = [
        "--config", f"configs/{recipe}.yaml",
        f"deepspeed=configs/deepspeed/zero{zero}.json", f"data.train=[{shards}]", "data.val=null",
        "data.num_workers=1", "batch_size=1", f"max_steps={2 * N}", f"save_every={N}", "log_every=1",
        "wandb.mode=disabled",
    ]  # fmt: skip
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run = _launch(["-m", "sec_train.train"], [*args, f"out_dir={straight}"])
    assert run.returncode == 0, run.stderr[-4000:]

    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    final = f"step-{2 * N:08d}"
    run = _launch([str(killer)], [*args, f"out_dir={killed}"], env={"KILL_AT_CHECKPOINT": final})
    assert run.returncode != 0
    checkpoints = killed / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == f"step-{N:08d}"
    assert (checkpoints / f".tmp-{final}").is_dir() and not (checkpoints / final).exists()

    run = _launch(["-m", "sec_train.train"], [*args, f"out_dir={killed}", "resume=auto"])
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"resumed from {checkpoints / f'step-{N:08d}'} at step {N}" in run.stderr + run.stdout

    expected, got = _losses(straight), _losses(killed)
    assert sorted(expected) == list(range(1, 2 * N + 1))
    assert got == expected
    expected_dir = straight / "checkpoints" / final
    has_lora = recipe == "toy_stage2"
    assert (expected_dir / "adapter").is_dir() == has_lora
    for weights in ["trainable.safetensors"] + ["adapter/adapter_model.safetensors"] * has_lora:
        a = load_file(expected_dir / weights)
        b = load_file(checkpoints / final / weights)
        assert a.keys() == b.keys() and a
        assert all(t.numel() for t in a.values()), "ZeRO-3 shards were saved instead of gathered weights"
        for name in a:
            assert torch.equal(a[name], b[name]), (weights, name)
    assert (checkpoints / "latest").read_text().strip() == final
