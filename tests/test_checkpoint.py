"""Checkpoint publishing: rename, the `latest` pointer, keep-last-K, and what resume picks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from accelerate import Accelerator

from sec_train.train.checkpoint import META, _publish, checkpoint_root, find_checkpoint, load_checkpoint


def _written(root: Path, step: int) -> tuple[Path, Path]:
    """A checkpoint of `step` as `save_checkpoint` leaves it before publishing."""
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-{final.name}"
    (tmp / "sub").mkdir(parents=True)
    (tmp / "sub" / "weights.bin").write_bytes(b"w" * step)
    (tmp / META).write_text(json.dumps({"step": step}))
    return tmp, final


def test_publish_moves_latest_and_keeps_last_k(tmp_path):
    root = checkpoint_root(tmp_path)
    for step in (10, 20, 30):
        _publish(*_written(root, step), keep_last=2)
        assert (root / "latest").read_text().strip() == f"step-{step:08d}"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000020", "step-00000030"]
    assert (root / "step-00000030" / "sub" / "weights.bin").read_bytes() == b"w" * 30
    assert find_checkpoint(tmp_path) == root / "step-00000030"


def test_prune_never_deletes_what_latest_names(tmp_path):
    root = checkpoint_root(tmp_path)
    for step in (10, 20):
        _publish(*_written(root, step), keep_last=1)
    _publish(*_written(root, 15), keep_last=1)  # a run resumed from step 10
    assert (root / "latest").read_text().strip() == "step-00000015"
    assert find_checkpoint(tmp_path) == root / "step-00000015"


def test_interrupted_write_leaves_previous_latest(tmp_path):
    root = checkpoint_root(tmp_path)
    _publish(*_written(root, 10), keep_last=3)
    _written(root, 20)  # killed before publishing: only the temporary directory exists
    assert find_checkpoint(tmp_path) == root / "step-00000010"


def test_find_falls_back_to_newest_complete(tmp_path):
    root = checkpoint_root(tmp_path)
    assert find_checkpoint(tmp_path) is None
    for step in (10, 20):
        _publish(*_written(root, step), keep_last=3)
    (root / "latest").write_text("step-00000099\n")  # names something that is not there
    (root / "step-00000030").mkdir()  # no meta.json: not complete
    assert find_checkpoint(tmp_path) == root / "step-00000020"


def test_load_refuses_incomplete_or_other_world_size(tmp_path):
    accelerator = Accelerator(cpu=True)
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_checkpoint(accelerator, tmp_path)
    (tmp_path / META).write_text("{}")
    with pytest.raises(FileNotFoundError, match="loader_rank0.pt is missing.*model.init="):
        load_checkpoint(accelerator, tmp_path)
