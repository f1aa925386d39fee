"""Checkpoint publishing: rename, the `latest` pointer, keep-last-K, and what resume picks; the
states a checkpoint stores, and that loading one never unpickles them."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from sec_train.checkpoint_layout import META, checkpoint_root, find_checkpoint
from sec_train.train import checkpoint
from sec_train.train.checkpoint import _publish, load_checkpoint, save_checkpoint
from sec_train.train.rng import RNGState


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
        load_checkpoint(accelerator, tmp_path, {})
    (tmp_path / META).write_text(json.dumps({"step": 1, "num_processes": 2}))
    with pytest.raises(ValueError, match="written by 2 processes, this run has 1.*model.init="):
        load_checkpoint(accelerator, tmp_path, {})
    (tmp_path / META).write_text(json.dumps({"step": 1, "num_processes": 1}))
    with pytest.raises(FileNotFoundError, match="loader_rank0.json is missing.*model.init="):
        load_checkpoint(accelerator, tmp_path, {"loader": _Position()})


class _Position:
    """A loader-like state: a position that advances."""

    def __init__(self, position: int = 0):
        self.position = position

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


class _Payload:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def _saved(tmp_path: Path, monkeypatch) -> tuple[Accelerator, Path, tuple]:
    """A checkpoint of a tiny model with a loader position and the RNG states, and the draws
    that follow the save."""
    monkeypatch.setattr(checkpoint, "save_trainable", lambda model, directory: None)  # SeC-only files
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 1))
    torch.manual_seed(3)
    states = {"loader": _Position(7), "rng": RNGState()}
    path = save_checkpoint(accelerator, model, tmp_path, 5, states=states, config_yaml="", keep_last=1)
    return accelerator, path, _draws()


def test_states_round_trip_as_json(tmp_path, monkeypatch):
    accelerator, path, after_save = _saved(tmp_path, monkeypatch)
    assert json.loads((path / "loader_rank0.json").read_text()) == {"position": 7}
    _draws()
    position = _Position()
    meta = load_checkpoint(accelerator, path, {"loader": position, "rng": RNGState()})
    assert meta == {"step": 5, "num_processes": 1} and position.position == 7
    assert _draws() == after_save


@pytest.mark.parametrize("planted", ["loader_rank0.json", "rng_rank0.json"])
def test_a_pickle_payload_in_a_state_file_is_refused_and_never_runs(tmp_path, monkeypatch, planted):
    accelerator, path, _ = _saved(tmp_path / "run", monkeypatch)
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(marker))
    pickle.loads(payload)  # the payload is live: unpickling it runs code
    assert marker.exists()
    marker.unlink()
    (path / planted).write_bytes(payload)
    position = _Position()
    with pytest.raises(ValueError, match=f"{planted} is not JSON.*never unpickled"):
        load_checkpoint(accelerator, path, {"loader": position, "rng": RNGState()})
    assert not marker.exists()
    assert position.position == 0  # refused before anything was restored


def test_a_payload_in_accelerates_rng_file_never_runs(tmp_path, monkeypatch):
    """accelerate's own RNG copy is read with `weights_only=True`, so it refuses the payload
    (and says nothing); the checkpoint's JSON RNG state restores the generators regardless."""
    accelerator, path, after_save = _saved(tmp_path / "run", monkeypatch)
    marker = tmp_path / "payload-ran"
    (path / "random_states_0.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    _draws()
    load_checkpoint(accelerator, path, {"loader": _Position(), "rng": RNGState()})
    assert not marker.exists()
    assert _draws() == after_save
