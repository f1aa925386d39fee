"""The shard stream behind `loader.Loader`: shards -> units -> shuffle buffer -> examples -> batches.

A *unit* is what one example is made from: a video (stage 1) or one object of a video
(stage 2). Each epoch the shard list is shuffled with the seed and split by rank, then by
worker; each worker streams its shards through a seeded shuffle buffer, so its unit order is a
deterministic function of (seed, epoch, rank, worker). Each example's randomness is drawn from
(seed, epoch, key, object), not from a running generator, so resuming only has to replay the
cheap part of the stream (tar bytes and JSON headers) up to the saved position of each worker,
without decoding a frame, and the next batches are the ones an uninterrupted run would give.
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from sec_train.data.format import decode_record, iter_records, read_index
from sec_train.types import Batch, VideoSample

logger = logging.getLogger(__name__)


class Sampler(Protocol):
    """Turns units into examples (see `stage1.Stage1Sampler`, `stage2.Stage2Sampler`)."""

    def units(self, header: dict[str, Any]) -> list[int | None]: ...

    def __call__(self, sample: VideoSample, obj: int | None, rng: np.random.Generator) -> Any: ...


@dataclass
class _Unit:
    """One unit of the stream, or a read error standing for `weight` lost samples."""

    shard: str
    key: str
    record: dict[str, Any] | None = None
    obj: int | None = None
    error: str | None = None
    weight: int = 1


def list_shards(paths: list[str]) -> list[tuple[str, int]]:
    """(shard path, sample count) of every shard the index files of `paths` list."""
    if not paths:
        raise ValueError("no shard directories given (data.train is empty)")
    shards = []
    for shard_dir in paths:
        for info in read_index(shard_dir)["shards"]:
            shards.append((str(Path(shard_dir) / info["name"]), int(info["samples"])))
    return shards


def shards_for(shards: list[tuple[str, int]], seed: int, epoch: int, slot: int, num_slots: int) -> list:
    """The shards slot `slot` (= rank * workers + worker) of `num_slots` reads this epoch."""
    order = sorted(shards)
    random.Random(f"{seed}/{epoch}/shards").shuffle(order)
    return order[slot::num_slots]


def example_rng(seed: int, epoch: int, key: str, obj: int | None) -> np.random.Generator:
    """The generator one example draws from, independent of stream order."""
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode()), 0 if obj is None else obj + 1])


class ShardStream(IterableDataset):
    """Yields `(batch or None, worker state)` pairs; the `Loader` unpacks them.

    Args:
        shards: (path, samples) of every shard.
        sampler: makes one example of one unit.
        collate: makes a batch of examples.
        batch_size: examples per batch; a worker's last batch may be smaller.
        seed, rank, world_size: the determinism and the split by rank.
        num_workers: the Loader's worker processes; 0 means one stream in the calling process.
        shuffle_buffer: units held for shuffling.
    """

    def __init__(
        self,
        shards: list[tuple[str, int]],
        sampler: Sampler,
        collate: Callable[[list[Any]], Batch],
        *,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        num_workers: int,
        shuffle_buffer: int,
    ):
        super().__init__()
        self.shards, self.sampler, self.collate = shards, sampler, collate
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.num_workers, self.shuffle_buffer = max(1, num_workers), shuffle_buffer
        self.epoch = 0
        self.resume: dict[int, dict[str, int]] = {}

    def __iter__(self) -> Iterator[tuple[Batch | None, dict[str, int]]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        slot = self.rank * self.num_workers + worker
        mine = shards_for(self.shards, self.seed, self.epoch, slot, self.world_size * self.num_workers)
        state = {"worker": worker, "position": 0, "seen": 0, "bad": 0, **self.resume.get(worker, {})}
        skip = state["position"]
        rng = random.Random(f"{self.seed}/{self.epoch}/{slot}/buffer")
        examples = []
        for position, unit in enumerate(_shuffled(self._units(mine), self.shuffle_buffer, rng), 1):
            if position <= skip:
                continue  # consumed before the checkpoint: replayed without decoding
            state["position"] = position
            state["seen"] += unit.weight
            example = self._example(unit)
            if example is None:
                state["bad"] += unit.weight
                continue
            examples.append(example)
            if len(examples) == self.batch_size:
                yield self.collate(examples), dict(state)
                examples = []
        yield (self.collate(examples) if examples else None), dict(state)

    def _units(self, shards: list[tuple[str, int]]) -> Iterator[_Unit]:
        for path, expected in shards:
            read = 0
            try:
                for record in iter_records(path):
                    read += 1
                    yield from self._expand(path, record)
            except Exception as err:  # a truncated or corrupt tar: its remaining samples are lost
                lost = max(1, expected - read)
                yield _Unit(path, "?", error=f"unreadable after {read} samples: {err!r}", weight=lost)

    def _expand(self, shard: str, record: dict[str, Any]) -> Iterator[_Unit]:
        key = record.get("__key__", "?")
        try:
            header = json.loads(record["json"])
            objs = self.sampler.units(header)
        except Exception as err:
            yield _Unit(shard, key, error=f"bad header: {err!r}")
            return
        for obj in objs:
            yield _Unit(shard, key, record=record, obj=obj)

    def _example(self, unit: _Unit) -> Any | None:
        if unit.error is None:
            try:
                sample = decode_record(unit.record, unit.shard)
                return self.sampler(sample, unit.obj, example_rng(self.seed, self.epoch, unit.key, unit.obj))
            except Exception as err:  # any bad input skips the sample; the Loader bounds how many
                unit.error = repr(err)
        logger.warning("skipping shard %s key %s object %s: %s", unit.shard, unit.key, unit.obj, unit.error)
        return None


def _shuffled(units: Iterator[_Unit], size: int, rng: random.Random) -> Iterator[_Unit]:
    """A shuffle buffer: holds `size` units and emits a random one as each new one arrives."""
    buffer: list[_Unit] = []
    for unit in units:
        if len(buffer) < size:
            buffer.append(unit)
            continue
        i = rng.randrange(size)
        yield buffer[i]
        buffer[i] = unit
    rng.shuffle(buffer)
    yield from buffer
