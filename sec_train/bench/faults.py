"""`python -m sec_train.bench faults [--json] [--trials N]`: fault-injection trials on a toy recipe
under 2-process DeepSpeed ZeRO-2 on CPU, each compared with one uninterrupted reference run.

- SIGKILL trials: a process is killed at a random moment (mid-step, mid-data-loading, inside
  each part of a checkpoint save, during pruning, or after a random delay), then `resume=auto`
  finishes the run.
- Damage trials: one file of the latest checkpoint (model shard, optimizer shard,
  trainable.safetensors, meta.json, loader state, the `latest` pointer) is truncated,
  bit-flipped or deleted, then `resume=auto` must fall back and finish.
- A full disk: a checkpoint write fails with ENOSPC; the run must stop with a clear error,
  `latest` must still name an intact checkpoint, and `resume=auto` must finish.

A trial survives when the run finishes and its final trainable weights and every step's loss are
bitwise equal to the reference; it lost data when resuming failed or a checkpoint it resumed
from was not the reference's state of that step; it differs when the run finished but weights or
losses do not match. The JSON reports these counts and each trial.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from data_tools.synth import synthesize
from sec_train.checkpoint_layout import CheckpointError, checkpoint_root, find_checkpoint

ROOT = Path(__file__).resolve().parents[2]
KILL_PHASES = ("step", "data", "save", "trainable", "seal", "publish", "prune", "timer")
DAMAGE_KINDS = ("truncated", "bit-flipped", "deleted")
VICTIMS = {
    "model shard": "pytorch_model/mp_rank_00_model_states.pt",
    "optimizer shard": "pytorch_model/*zero_pp_rank_1_mp_rank_00_optim_states.pt",
    "trainable": "trainable.safetensors",
    "meta": "meta.json",
    "loader state": "loader_rank1.json",
    "latest pointer": "latest",  # in the checkpoints directory
}


class Harness:
    """Launches toy runs of `steps` steps (a checkpoint every step) with one fault injected."""

    def __init__(self, work: Path, recipe: str, steps: int):
        self.work, self.steps = work, steps
        synthesize(work / "synth", 4, frames=8, height=48, width=48, objects=2, shard_bytes=20_000)
        self.args = [
            "--config", str(ROOT / "configs" / f"{recipe}.yaml"), f"data.train=[{work / 'synth' / 'shards'}]",
            "data.val=null", "data.num_workers=1", "batch_size=1", f"max_steps={steps}", "save_every=1",
            "log_every=1", "wandb.mode=disabled", f"deepspeed={ROOT / 'configs/deepspeed/zero2.json'}",
        ]  # fmt: skip

    def launch(self, out: Path, fault: dict | None = None, *extra: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
            "-m", "sec_train.bench.fault_inject", *self.args, f"out_dir={out}", *extra,
        ]  # fmt: skip
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
        env["SEC_FAULT"] = json.dumps(fault or {})
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    def final(self, out: Path) -> Path:
        return checkpoint_root(out) / f"step-{self.steps:08d}"


def _losses(out: Path) -> dict[int, float]:
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def same_weights(a: Path, b: Path) -> bool:
    """Whether two checkpoints' trainable.safetensors hold bitwise equal tensors."""
    if not (a / "trainable.safetensors").is_file() or not (b / "trainable.safetensors").is_file():
        return False
    x, y = load_file(a / "trainable.safetensors"), load_file(b / "trainable.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def check_pick(out: Path, reference: Path) -> str | None:
    """Why what `resume=auto` would pick in `out` is wrong (None: it is intact and equal to the
    reference's checkpoint of its step, or there is none yet)."""
    try:
        picked = find_checkpoint(out)
    except CheckpointError as err:
        return str(err)
    if picked is not None and not same_weights(picked, checkpoint_root(reference) / picked.name):
        return f"{picked.name} differs from the reference's"
    return None


def finished_like(h: Harness, out: Path, reference: Path) -> bool:
    """Whether the run in `out` ended with the reference's final weights and every step's loss."""
    return same_weights(h.final(out), h.final(reference)) and _losses(out) == _losses(reference)


def finish(h: Harness, out: Path, reference: Path, trial: dict[str, Any]) -> dict[str, Any]:
    """After a fault: checks what `resume=auto` picks, resumes, compares with `reference`."""
    why = check_pick(out, reference)
    run = None if why else h.launch(out, None, "resume=auto")
    if run is not None and run.returncode != 0:
        why = run.stderr[-2000:]
    if why:
        return {**trial, "outcome": "lost", "why": why}
    return {**trial, "outcome": "survived" if finished_like(h, out, reference) else "differs"}


def random_kill(h: Harness, rng: random.Random, after: int) -> dict[str, Any] | None:
    """A kill at a random phase of a random step after `after` (None: no step left)."""
    phase = rng.choice(KILL_PHASES)
    first = max(after + 1, 3 if phase == "prune" else 1)  # keep_last=2 prunes from step 3
    if first > h.steps:
        return None
    main_only = phase in ("trainable", "seal", "publish", "prune")
    fault: dict[str, Any] = {"kill": phase, "rank": 0 if main_only else rng.randrange(2)}
    # one of the next two steps: a chain of kills moves through the whole run
    fault.update(
        step=rng.randint(first, min(first + 1, h.steps)), examples=rng.randint(1, 3), calls=rng.randint(1, 2)
    )
    fault.update(files=rng.randint(0, 4), seconds=round(rng.uniform(0.5, h.seconds), 2))
    return fault


def kill_chain(h: Harness, out: Path, reference: Path, rng: random.Random, kills: int) -> list[dict]:
    """Up to `kills` SIGKILLs in one run, each followed by `resume=auto` (which the next kill
    may hit), then a last `resume=auto` to the end; every kill's outcome is the chain's."""
    trials: list[dict[str, Any]] = []
    resume: list[str] = []
    while len(trials) < kills:
        pick = find_checkpoint(out) if resume else None
        fault = random_kill(h, rng, int(pick.name[5:]) if pick else 0)
        if fault is None:
            break
        run = h.launch(out, fault, "keep_last=2", *resume)
        resume = ["resume=auto"]
        if run.returncode == 0:  # the fault did not fire (e.g. the worker had prefetched enough)
            break
        why = check_pick(out, reference)
        trials.append({"fault": fault, **({"why": why} if why else {})})
        if why:
            break
    finished = h.final(out).is_dir() and finished_like(h, out, reference)
    if not finished and not any("why" in t for t in trials):
        run = h.launch(out, None, "keep_last=2", "resume=auto")
        if run.returncode != 0:
            trials[-1]["why"] = run.stderr[-2000:]
        finished = run.returncode == 0 and finished_like(h, out, reference)
    lost = any("why" in t for t in trials)
    outcome = "lost" if lost else "survived" if finished else "differs"
    return [{**t, "outcome": outcome} for t in trials]


def damage_trial(h: Harness, out: Path, reference: Path, victim: str, kind: str) -> dict[str, Any]:
    root, ref_root = checkpoint_root(out), checkpoint_root(reference)
    last = h.steps - 1  # resuming from it (or the one before) leaves steps to train
    for step in (last - 1, last):
        shutil.copytree(ref_root / f"step-{step:08d}", root / f"step-{step:08d}")
    (root / "latest").write_text(f"step-{last:08d}\n")
    shutil.copy(reference / "metrics.jsonl", out / "metrics.jsonl")
    (path,) = (root if victim == "latest pointer" else root / f"step-{last:08d}").glob(VICTIMS[victim])
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "bit-flipped":
        flipped = bytearray(data)
        flipped[random.Random(f"{victim}/{kind}").randrange(len(data))] ^= 1 << random.Random(kind).randrange(
            8
        )
        path.write_bytes(bytes(flipped))
    else:
        path.unlink()
    return finish(h, out, reference, {"fault": {"damaged": victim, "kind": kind}})


def enospc_trial(h: Harness, out: Path, reference: Path) -> dict[str, Any]:
    step = h.steps - 1
    run = h.launch(out, {"enospc": step})
    kept = f"`latest` still names step-{step - 1:08d}"
    clear = run.returncode != 0 and "No space left on device" in run.stderr and kept in run.stderr
    leftovers = sorted(p.name for p in checkpoint_root(out).glob(".tmp-*"))
    trial = {"fault": {"enospc": step}, "clear_error": clear, "leftovers": leftovers}
    if not clear:
        return {**trial, "outcome": "lost", "why": run.stderr[-2000:]}
    return finish(h, out, reference, trial)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sec_train.bench faults", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--trials", type=int, default=30, help="SIGKILL trials")
    parser.add_argument("--steps", type=int, default=6, help="steps of each run (a checkpoint each)")
    parser.add_argument("--recipe", default="toy_stage1", help="a toy recipe of configs/")
    parser.add_argument("--seed", type=int, default=0, help="seeds the faults' random choices")
    parser.add_argument("--no-damage", action="store_true", help="skip the damaged-file trials")
    parser.add_argument("--chain", type=int, default=4, help="SIGKILLs in one run before it may finish")
    parser.add_argument("--out", help="also write the summary here after every trial")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        h = Harness(work, args.recipe, args.steps)
        reference = work / "reference"
        run = h.launch(reference, None, f"keep_last={args.steps}")
        if run.returncode != 0:
            print(run.stderr[-4000:], file=sys.stderr)
            return 1
        h.seconds = max(1.0, _fit_seconds(run.stderr))
        plan: list[tuple[str, Any, Any]] = [("enospc", None, None)]
        if not args.no_damage:
            plan += [("damage", victim, kind) for victim in VICTIMS for kind in DAMAGE_KINDS]
        trials: list[dict[str, Any]] = []
        bar = tqdm(total=args.trials + len(plan), desc="fault trials")
        for i, (what, victim, kind) in enumerate(plan):
            out = work / f"fault-{i}"
            out.mkdir()
            if what == "enospc":
                trials.append({"type": "enospc", **enospc_trial(h, out, reference)})
            else:
                trials.append({"type": "damage", **damage_trial(h, out, reference, victim, kind)})
            bar.update(1)
            _report(args.out, trials)
            shutil.rmtree(out)
        for _ in range(3 * args.trials):  # a chain whose first fault does not fire adds no trial
            killed = sum(t["type"] == "kill" for t in trials)
            if killed >= args.trials:
                break
            out = work / f"trial-{len(trials)}"
            chain = kill_chain(h, out, reference, rng, min(args.chain, args.trials - killed))
            trials += [{"type": "kill", **t} for t in chain]
            bar.update(len(chain))
            _report(args.out, trials)
            shutil.rmtree(out)
    print(json.dumps(summary(trials)) if args.json else json.dumps(summary(trials), indent=1))
    return 0


def _report(path: str | None, trials: list[dict[str, Any]]) -> None:
    if path:
        Path(path).write_text(json.dumps(summary(trials), indent=1) + "\n")


def summary(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by trial type and outcome, with every trial."""
    fired = trials
    result: dict[str, Any] = {
        "trials_run": len(fired),
        "faults_survived": sum(t["outcome"] == "survived" for t in fired),
        "lost_data": sum(t["outcome"] == "lost" for t in fired),
        "differ_from_uninterrupted": sum(t["outcome"] == "differs" for t in fired),
    }
    for kind in ("kill", "damage", "enospc"):
        mine = [t for t in fired if t["type"] == kind]
        result[f"{kind}_trials"] = len(mine)
        result[f"{kind}_survived"] = sum(t["outcome"] == "survived" for t in mine)
    result["trials"] = trials
    return result


def _fit_seconds(log: str) -> float:
    """Roughly how long the reference's training took (the progress bar's elapsed time)."""
    import re

    times = re.findall(r"\[(\d+):(\d+)<", log)
    return float(int(times[-1][0]) * 60 + int(times[-1][1])) if times else 5.0
