"""Faults under `accelerate launch` with 2 CPU processes and DeepSpeed ZeRO-2, injected by
`sec_train.bench.fault_inject` and compared bitwise with one uninterrupted run (the harness of
`python -m sec_train.bench faults`, which runs many random trials): SIGKILLs mid-save and
mid-prune each followed by `resume=auto`, and a checkpoint write that fails with ENOSPC."""

from __future__ import annotations

from pathlib import Path

import pytest

from sec_train.bench.faults import Harness, check_pick, enospc_trial, finished_like
from sec_train.checkpoint_layout import checkpoint_root, find_checkpoint, verify_checkpoint

STEPS = 3


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> tuple[Harness, Path]:
    work = tmp_path_factory.mktemp("faults")
    h = Harness(work, "toy_stage1", STEPS)
    reference = work / "reference"
    run = h.launch(reference, None, f"keep_last={STEPS}")
    assert run.returncode == 0, run.stderr[-4000:]
    return h, reference


@pytest.mark.slow
def test_kills_mid_save_and_mid_prune_resume_to_the_uninterrupted_result(harness, tmp_path):
    h, reference = harness
    # rank 1 dies inside DeepSpeed's save of checkpoint 2: checkpoint 1 stays latest
    run = h.launch(tmp_path, {"kill": "save", "rank": 1, "step": 2, "calls": 1}, "keep_last=2")
    assert run.returncode != 0
    assert find_checkpoint(tmp_path) == checkpoint_root(tmp_path) / "step-00000001"
    assert check_pick(tmp_path, reference) is None
    # the resumed run dies while pruning checkpoint 1 after publishing 3, two files deleted
    fault = {"kill": "prune", "rank": 0, "step": 3, "files": 2}
    run = h.launch(tmp_path, fault, "keep_last=2", "resume=auto")
    assert run.returncode != 0 and "resumed from" in run.stdout + run.stderr
    names = sorted(p.name for p in checkpoint_root(tmp_path).iterdir())
    assert names == [".tmp-pruned-step-00000001", "latest", "step-00000002", "step-00000003"]
    assert verify_checkpoint(checkpoint_root(tmp_path) / "step-00000003")["step"] == 3
    assert finished_like(h, tmp_path, reference)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_clearly_and_resume_finishes_it(harness, tmp_path):
    h, reference = harness
    trial = enospc_trial(h, tmp_path, reference)
    assert trial["clear_error"] and trial["leftovers"] == [], trial
    assert trial["outcome"] == "survived", trial
