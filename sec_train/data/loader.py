"""The resumable training loader: `Loader` (one epoch of batches per `iter()`, mid-epoch state),
and `build_loader`, which makes one from a recipe's `DataConfig` and the model's sizes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from sec_train.data.collate import Stage2Collator, collate_stage1
from sec_train.data.config import DataConfig
from sec_train.data.shards import ShardStream, list_shards
from sec_train.data.stage1 import Stage1Sampler
from sec_train.data.stage2 import Stage2Sampler
from sec_train.model.config import Mode
from sec_train.types import Batch

# Below this many samples the bad fraction is checked only at the end of the epoch: a single
# early bad sample would otherwise stop a run on its first batch.
_MIN_SEEN_FOR_CHECK = 200


class Loader:
    """Iterates one epoch of batches per `iter()`; resumable mid-epoch.

    `state_dict()` records, per worker, how many units it has delivered to the consumer (not
    merely prefetched); `load_state_dict()` makes the next `iter()` continue from there. Once an
    epoch is complete the next `iter()` runs the following one. `skipped` / `seen` count the bad
    and read samples of the current (or just finished) epoch; more than `max_bad_fraction` bad
    stops the run with an error.
    """

    def __init__(
        self, stream: ShardStream, *, num_workers: int, prefetch_factor: int, max_bad_fraction: float
    ):
        self.stream = stream
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.max_bad_fraction = max_bad_fraction
        self.epoch = 0
        self._done = False
        self._workers: dict[int, dict[str, int]] = {}

    @property
    def seen(self) -> int:
        return sum(w["seen"] for w in self._workers.values())

    @property
    def skipped(self) -> int:
        return sum(w["bad"] for w in self._workers.values())

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch the next `iter()` runs; unless it is the one in progress, it runs
        from its beginning."""
        if epoch != self.epoch or self._done:
            self.epoch, self._workers, self._done = epoch, {}, False

    def __iter__(self) -> Iterator[Batch]:
        if self._done:
            self.set_epoch(self.epoch + 1)
        self.stream.epoch, self.stream.resume = self.epoch, {k: dict(v) for k, v in self._workers.items()}
        loader = DataLoader(
            self.stream,
            batch_size=None,
            num_workers=self.num_workers,
            prefetch_factor=self.prefetch_factor if self.num_workers else None,
            pin_memory=torch.cuda.is_available(),
        )
        for batch, state in loader:
            self._workers[state["worker"]] = {k: v for k, v in state.items() if k != "worker"}
            if self.seen >= _MIN_SEEN_FOR_CHECK:
                self._check_bad()
            if batch is not None:
                yield batch
        self._check_bad()
        self._done = True

    def _check_bad(self) -> None:
        if self.skipped > self.max_bad_fraction * max(self.seen, 1):
            raise RuntimeError(
                f"{self.skipped} of {self.seen} samples were bad in epoch {self.epoch} (more than "
                f"data.max_bad_fraction={self.max_bad_fraction}); the log names each shard and key"
            )

    def state_dict(self) -> dict[str, Any]:
        """This process's position, JSON-serialisable (the checkpoint stores it as JSON).

        "epoch", "seed", "world_size" and "num_workers" are the same on every process: together
        they fix how the shards are split. "rank" and "workers" are this process's part:
        "workers" maps each of its workers to {"position", "seen", "bad"}, where "position"
        counts the units of the stream of slot `rank * num_workers + worker` already delivered.
        """
        s = self.stream
        return {
            "epoch": self.epoch + 1 if self._done else self.epoch,
            "seed": s.seed,
            "rank": s.rank,
            "world_size": s.world_size,
            "num_workers": s.num_workers,
            "workers": {} if self._done else {str(k): dict(v) for k, v in self._workers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = self.stream
        saved = (state["seed"], state["rank"], state["world_size"], state["num_workers"])
        current = (s.seed, s.rank, s.world_size, s.num_workers)
        if saved != current:
            raise ValueError(
                f"loader state was saved with (seed, rank, world_size, num_workers)={saved}, this run "
                f"has {current}; a mid-epoch resume needs the same"
            )
        self.epoch, self._done = int(state["epoch"]), False
        self._workers = {int(k): dict(v) for k, v in state["workers"].items()}


def build_loader(
    cfg: DataConfig,
    *,
    mode: Mode,
    tokenizer: PreTrainedTokenizerBase | None,
    lvlm_image_size: int,
    sam_image_size: int,
    num_image_tokens: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> Loader:
    """A resumable streaming loader over the shards of `cfg.train`.

    Args:
        cfg: the recipe's data section.
        mode: "stage1" yields `Stage1Batch`es; "concept_only" / "fused" yield `Stage2Batch`es.
        tokenizer: the LVLM tokenizer (with `[SEG]`); unused in stage 1 and may be None there.
        lvlm_image_size, sam_image_size, num_image_tokens: from the model
            (`SeCModel.lvlm_image_size`, `.sam_image_size`, `.num_image_tokens`).
        batch_size: examples per batch on this rank.
        rank, world_size: this process's share of the shards.
        seed: makes shard order, shuffling and every example's randomness reproducible.

    Returns:
        A `Loader`: iterate it for one epoch of batches; `set_epoch`, `state_dict`,
        `load_state_dict`, and `skipped` / `seen` for the bad-sample counts.
    """
    if mode == "stage1":
        sampler, collate = Stage1Sampler(cfg.stage1, sam_image_size), collate_stage1
    else:
        if tokenizer is None:
            raise ValueError(f"mode {mode!r} tokenizes prompts: pass the LVLM tokenizer")
        sampler = Stage2Sampler(
            cfg.stage2,
            mode=mode,
            tokenizer=tokenizer,
            lvlm_image_size=lvlm_image_size,
            sam_image_size=sam_image_size,
            num_image_tokens=num_image_tokens,
        )
        collate = Stage2Collator(tokenizer.pad_token_id)
    stream = ShardStream(
        list_shards(list(cfg.train)),
        sampler,
        collate,
        batch_size=batch_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_workers=cfg.num_workers,
        shuffle_buffer=cfg.shuffle_buffer,
    )
    return Loader(
        stream,
        num_workers=cfg.num_workers,
        prefetch_factor=cfg.prefetch_factor,
        max_bad_fraction=cfg.max_bad_fraction,
    )
