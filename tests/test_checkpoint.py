"""Checkpoint publishing: rename, the `latest` pointer, keep-last-K, and what resume picks; the
states a checkpoint stores, and that loading one never unpickles them; file records in
meta.json, verification and fallback, failed writes, and the refusal to overwrite a run."""

from __future__ import annotations

import errno
import json
import logging
import pickle
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from sec_train.checkpoint_layout import (
    META,
    CheckpointError,
    DamagedCheckpointError,
    checkpoint_root,
    find_checkpoint,
    sealed_meta,
    verify_checkpoint,
)
from sec_train.train import checkpoint
from sec_train.train.__main__ import main as train_main
from sec_train.train.checkpoint import (
    CheckpointWriteError,
    _publish,
    load_checkpoint,
    save_checkpoint,
    start_checkpoint,
)
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


def test_load_refuses_incomplete_or_other_launcher_or_unsplittable_states(tmp_path):
    accelerator = Accelerator(cpu=True)
    with pytest.raises(DamagedCheckpointError, match="meta.json: missing"):
        load_checkpoint(accelerator, tmp_path, {})
    meta = {"step": 1, "num_processes": 2, "launcher": "deepspeed", "zero_stage": 3}
    (tmp_path / META).write_text(sealed_meta(meta))
    with pytest.raises(
        ValueError, match="under deepspeed with 2 processes.*deepspeed=configs/deepspeed/zero3.json"
    ):
        load_checkpoint(accelerator, tmp_path, {})
    (tmp_path / META).write_text(sealed_meta(meta | {"launcher": "plain"}))
    for rank in (0, 1):
        (tmp_path / f"loader_rank{rank}.json").write_text('{"position": 1}')
    with pytest.raises(ValueError, match=r"\['loader'\] cannot move from 2 processes to 1"):
        load_checkpoint(accelerator, tmp_path, {"loader": _Position()})
    (tmp_path / META).write_text(json.dumps({"step": 1, "num_processes": 1}))
    (tmp_path / "loader_rank0.json").unlink()
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
    path = save_checkpoint(
        accelerator, model, tmp_path, 5, states=states, config_yaml="", keep_last=1, global_batch=4
    )
    return accelerator, path, _draws()


def test_states_round_trip_as_json(tmp_path, monkeypatch):
    accelerator, path, after_save = _saved(tmp_path, monkeypatch)
    assert json.loads((path / "loader_rank0.json").read_text()) == {"position": 7}
    _draws()
    position = _Position()
    meta = load_checkpoint(accelerator, path, {"loader": position, "rng": RNGState()})
    assert {k: meta[k] for k in ("step", "num_processes", "global_batch", "launcher", "zero_stage")} == {
        "step": 5,
        "num_processes": 1,
        "global_batch": 4,
        "launcher": "plain",
        "zero_stage": None,
    }
    assert position.position == 7
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


def _run_with_checkpoints(
    tmp_path: Path, monkeypatch, steps=(1, 2, 3), keep_last=5
) -> tuple[Accelerator, dict]:
    """A run directory with real checkpoints of a tiny model at `steps`; their paths by step."""
    monkeypatch.setattr(checkpoint, "save_trainable", lambda model, directory: None)  # SeC-only files
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 1))
    states = {"loader": _Position(7), "rng": RNGState()}
    paths = {
        step: save_checkpoint(
            accelerator,
            model,
            tmp_path,
            step,
            states=states,
            config_yaml="x: 1",
            keep_last=keep_last,
            global_batch=1,
        )
        for step in steps
    }
    return accelerator, paths


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGES = {"truncated": _truncate, "bit-flipped": _flip_bit, "deleted": Path.unlink}


def test_meta_records_every_file_with_size_and_crc(tmp_path, monkeypatch):
    _, paths = _run_with_checkpoints(tmp_path, monkeypatch, steps=(1,))
    meta = json.loads((paths[1] / META).read_text())
    on_disk = {p.relative_to(paths[1]).as_posix() for p in paths[1].rglob("*") if p.is_file()} - {META}
    assert set(meta["files"]) == on_disk and {"model.safetensors", "loader_rank0.json"} <= on_disk
    assert meta["files"]["config.yaml"] == {"size": 4, "crc32": f"{zlib.crc32(b'x: 1'):08x}"}
    assert verify_checkpoint(paths[1])["step"] == 1


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("victim", ["model.safetensors", "loader_rank0.json", META])
def test_resume_auto_falls_back_past_a_damaged_file_and_names_it(
    tmp_path, monkeypatch, caplog, victim, damage
):
    accelerator, paths = _run_with_checkpoints(tmp_path, monkeypatch)
    DAMAGES[damage](paths[3] / victim)
    with caplog.at_level(logging.WARNING):
        chosen = start_checkpoint(accelerator, tmp_path, resume="auto", overwrite=False, checksums=True)
    assert chosen == paths[2]
    assert f"step-00000003/{victim}" in caplog.text and "newest intact" in caplog.text
    with pytest.raises(CheckpointError, match=f"resume=.*step-00000003 is damaged: .*step-00000003/{victim}"):
        start_checkpoint(accelerator, tmp_path, resume=str(paths[3]), overwrite=False, checksums=True)


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_latest_pointer_falls_back_to_the_newest_checkpoint(tmp_path, monkeypatch, damage):
    accelerator, paths = _run_with_checkpoints(tmp_path, monkeypatch)
    DAMAGES[damage](checkpoint_root(tmp_path) / "latest")
    assert start_checkpoint(accelerator, tmp_path, resume="auto", overwrite=False, checksums=True) == paths[3]


def test_sizes_are_always_checked_checksums_only_when_asked(tmp_path, monkeypatch):
    _, paths = _run_with_checkpoints(tmp_path, monkeypatch)
    _flip_bit(paths[3] / "model.safetensors")
    assert find_checkpoint(tmp_path, checksums=False) == paths[3]
    assert find_checkpoint(tmp_path) == paths[2]
    _truncate(paths[3] / "model.safetensors")
    assert find_checkpoint(tmp_path, checksums=False) == paths[2]


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path, monkeypatch):
    _, paths = _run_with_checkpoints(tmp_path, monkeypatch, steps=(1,))
    (paths[1] / "loader_rank0.json").unlink()
    with pytest.raises(
        DamagedCheckpointError, match="loader_rank0.json: missing; no checkpoint .* is intact"
    ):
        find_checkpoint(tmp_path)


def test_pruning_keeps_the_newest_intact_checkpoints_not_damaged_ones(tmp_path, monkeypatch):
    accelerator, paths = _run_with_checkpoints(tmp_path, monkeypatch, keep_last=2)
    assert sorted(p.name for p in checkpoint_root(tmp_path).glob("step-*")) == [
        "step-00000002",
        "step-00000003",
    ]
    _truncate(paths[3] / "model.safetensors")  # damaged after publishing; the run resumes from step 2
    model = accelerator.prepare(torch.nn.Linear(2, 1))
    save_checkpoint(accelerator, model, tmp_path, 3, states={}, config_yaml="", keep_last=2, global_batch=1)
    assert sorted(p.name for p in checkpoint_root(tmp_path).glob("step-*")) == [
        "step-00000002",
        "step-00000003",
    ]
    assert find_checkpoint(tmp_path) == paths[3]
    # a damaged newer checkpoint of an abandoned run does not push the intact ones out
    _run_with_checkpoints(tmp_path, monkeypatch, steps=(4,), keep_last=2)
    _flip_bit(paths[3].parent / "step-00000004" / META)
    save_checkpoint(accelerator, model, tmp_path, 4, states={}, config_yaml="", keep_last=3, global_batch=1)
    _truncate(paths[3].parent / "step-00000004" / "model.safetensors")
    save_checkpoint(accelerator, model, tmp_path, 2, states={}, config_yaml="", keep_last=2, global_batch=1)
    assert sorted(p.name for p in checkpoint_root(tmp_path).glob("step-*")) == [
        "step-00000002",
        "step-00000003",
    ]


def test_a_failed_write_keeps_latest_and_removes_the_partial_checkpoint(tmp_path, monkeypatch):
    accelerator, paths = _run_with_checkpoints(tmp_path, monkeypatch, steps=(1,))

    def full_disk(model, directory):
        (directory / "trainable.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_trainable", full_disk)
    model = accelerator.prepare(torch.nn.Linear(2, 1))
    with pytest.raises(
        CheckpointWriteError, match="No space left.*`latest` still names step-00000001.*resume=auto"
    ):
        save_checkpoint(
            accelerator, model, tmp_path, 2, states={}, config_yaml="", keep_last=1, global_batch=1
        )
    root = checkpoint_root(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000001"]
    assert find_checkpoint(tmp_path) == paths[1]


def _train_args(out_dir: Path, *extra: str) -> list[str]:
    return ["--config", "configs/toy_stage1.yaml", f"out_dir={out_dir}", "wandb.mode=disabled", *extra]


def test_a_fresh_run_refuses_an_out_dir_holding_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    _run_with_checkpoints(tmp_path, monkeypatch, steps=(4,))
    assert train_main(_train_args(tmp_path)) == 2
    error = capsys.readouterr().err
    assert "already holds checkpoints (step-00000004)" in error
    assert "resume=auto" in error and "overwrite=true" in error
    assert train_main(_train_args(tmp_path, "overwrite=true", "resume=auto")) == 2
    assert "choose one" in capsys.readouterr().err


def test_overwrite_moves_the_old_run_aside(tmp_path, monkeypatch, caplog):
    accelerator, paths = _run_with_checkpoints(tmp_path, monkeypatch, steps=(4,))
    (tmp_path / "metrics.jsonl").write_text('{"step": 4, "loss": 1.0}\n')
    with pytest.raises(CheckpointError, match="overwrite=true"):
        start_checkpoint(accelerator, tmp_path, resume=None, overwrite=False, checksums=True)
    with caplog.at_level(logging.WARNING):
        assert start_checkpoint(accelerator, tmp_path, resume=None, overwrite=True, checksums=True) is None
    (aside,) = tmp_path.glob("replaced-*")
    assert str(aside) in caplog.text
    assert not checkpoint_root(tmp_path).exists() and not (tmp_path / "metrics.jsonl").exists()
    assert verify_checkpoint(aside / "checkpoints" / "step-00000004")["step"] == 4
    assert (aside / "metrics.jsonl").read_text().startswith('{"step": 4')


class _Positions(_Position):
    """A state that takes every old rank's position when the world size changed."""

    def load_resharded_state_dicts(self, states: list[dict]) -> None:
        self.position = sum(state["position"] for state in states)


def test_a_plain_checkpoint_of_two_processes_resumes_on_one(tmp_path, monkeypatch):
    accelerator, path, _ = _saved(tmp_path, monkeypatch)
    # as two processes would have written it: rank 1's files beside rank 0's
    meta = {k: v for k, v in json.loads((path / META).read_text()).items() if k != "meta_crc32"}
    (path / META).write_text(sealed_meta(meta | {"num_processes": 2}))
    (path / "loader_rank1.json").write_text('{"position": 5}')
    (path / "rng_rank1.json").write_text((path / "rng_rank0.json").read_text())
    weights = [p.detach().clone() for p in accelerator._models[0].parameters()]
    with torch.no_grad():
        for p in accelerator._models[0].parameters():
            p.zero_()
    draws = []
    for rank in (0, 1, 0):
        position = _Positions()
        load_checkpoint(accelerator, path, {"loader": position, "rng": RNGState(rank)})
        draws.append(_draws())
        assert position.position == 12
    assert all(torch.equal(a, b) for a, b in zip(weights, accelerator._models[0].parameters()))
    assert draws[0] == draws[2] != draws[1]  # each new rank its own stream, the same on every resume
