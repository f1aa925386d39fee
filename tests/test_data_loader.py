"""The streaming loader: split across ranks and workers, determinism, mid-epoch resume."""

import pytest
import torch

from data_tools.synth import synthesize
from sec_train.data.config import DataConfig, Stage1Config
from sec_train.data.format import read_index
from sec_train.data.loader import build_loader
from sec_train.model.tokenizer import build_toy_tokenizer

SIZES = dict(lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, 12, frames=8, height=32, width=40, objects=2, shard_bytes=25_000)
    return out / "shards"


@pytest.fixture(scope="module")
def tokenizer():
    return build_toy_tokenizer()


def _loader(shard_dir, tokenizer, mode="concept_only", workers=0, rank=0, world=1, seed=0, batch=3):
    stage1 = Stage1Config(num_frames=4, stride=2)
    cfg = DataConfig(train=[str(shard_dir)], num_workers=workers, shuffle_buffer=4, stage1=stage1)
    return build_loader(
        cfg, mode=mode, tokenizer=tokenizer, batch_size=batch, rank=rank, world_size=world, seed=seed, **SIZES
    )


def _all_units(shard_dir):
    keys = [k for shard in read_index(shard_dir)["shards"] for k in shard["keys"]]
    return sorted(f"{k}/{obj}" for k in keys for obj in (1, 2))


def test_two_ranks_two_workers_yield_every_object_exactly_once(shard_dir, tokenizer):
    assert len(read_index(shard_dir)["shards"]) >= 4  # every worker of every rank has a shard
    keys = []
    for rank in (0, 1):
        loader = _loader(shard_dir, tokenizer, workers=2, rank=rank, world=2)
        keys += [k for batch in loader for k in batch.keys]
        assert loader.skipped == 0
    assert sorted(keys) == _all_units(shard_dir)


def test_order_is_seeded_per_epoch(shard_dir, tokenizer):
    def order(seed, epoch):
        loader = _loader(shard_dir, tokenizer, mode="stage1", seed=seed)
        loader.set_epoch(epoch)
        return [k for batch in loader for k in batch.keys]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert sorted(order(0, 0)) == sorted(order(1, 0))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_gives_the_batches_an_uninterrupted_run_gives(shard_dir, tokenizer, workers):
    full = list(_loader(shard_dir, tokenizer, workers=workers))
    first = _loader(shard_dir, tokenizer, workers=workers)
    taken = []
    for batch in first:
        taken.append(batch)
        if len(taken) == 4:
            break
    state = first.state_dict()
    resumed = _loader(shard_dir, tokenizer, workers=workers)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert sorted(k for b in taken + rest for k in b.keys) == _all_units(shard_dir)  # nothing replayed
    by_key = {k: (b, i) for b in full for i, k in enumerate(b.keys)}
    for batch in rest:
        for i, key in enumerate(batch.keys):
            ref, j = by_key[key]
            assert torch.equal(batch.input_ids[i], ref.input_ids[j])
            assert torch.equal(batch.sam_images[i], ref.sam_images[j])  # concept_only: one frame each
    assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["workers"] == {}


def test_resume_refuses_a_different_split(shard_dir, tokenizer):
    state = _loader(shard_dir, tokenizer).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        _loader(shard_dir, tokenizer, rank=1, world=2).load_state_dict(state)
