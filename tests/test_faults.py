"""Faults under `accelerate launch` with 2 CPU processes and DeepSpeed ZeRO-2, injected by
`sec_train.bench.fault_inject` and compared bitwise with one uninterrupted run (the harness of
`python -m sec_train.bench faults`, which runs many random trials). One run meets three faults
in a row, each followed by `resume=auto`: a SIGKILL inside DeepSpeed's save, a checkpoint write
that fails with ENOSPC, and a SIGKILL mid-prune."""

from __future__ import annotations

import pytest

from sec_train.bench.faults import Harness, check_pick, finished_like
from sec_train.checkpoint_layout import checkpoint_root, find_checkpoint, verify_checkpoint


@pytest.mark.slow
def test_kills_and_a_full_disk_resume_to_the_uninterrupted_result(tmp_path):
    h, reference, out = Harness(tmp_path, "toy_stage1", 3), tmp_path / "reference", tmp_path / "faulty"
    run = h.launch(reference, None, "keep_last=3")
    assert run.returncode == 0, run.stderr[-4000:]
    root = checkpoint_root(out)

    # rank 1 dies inside DeepSpeed's save of checkpoint 2: checkpoint 1 stays latest
    run = h.launch(out, {"kill": "save", "rank": 1, "step": 2, "calls": 1}, "keep_last=2")
    assert run.returncode != 0
    assert find_checkpoint(out) == root / "step-00000001" and check_pick(out, reference) is None

    # resumed, it publishes 2, then the disk fills while checkpoint 3 is written
    run = h.launch(out, {"enospc": 3}, "keep_last=2", "resume=auto")
    assert run.returncode != 0
    assert "No space left on device" in run.stderr and "`latest` still names step-00000002" in run.stderr
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000001", "step-00000002"]
    assert check_pick(out, reference) is None

    # resumed again, it publishes 3 and dies while pruning checkpoint 1, two files deleted
    run = h.launch(out, {"kill": "prune", "rank": 0, "step": 3, "files": 2}, "keep_last=2", "resume=auto")
    assert run.returncode != 0 and "resumed from" in run.stdout + run.stderr
    names = sorted(p.name for p in root.iterdir())
    assert names == [".tmp-pruned-step-00000001", "latest", "step-00000002", "step-00000003"]
    assert verify_checkpoint(root / "step-00000003")["step"] == 3
    assert finished_like(h, out, reference)
