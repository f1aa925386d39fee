"""`build_loader`: the training loader of a recipe, from its `DataConfig` and the model's sizes."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from sec_train.data.collate import Stage2Collator, collate_stage1
from sec_train.data.config import DataConfig
from sec_train.data.shards import Loader, ShardStream, list_shards
from sec_train.data.stage1 import Stage1Sampler
from sec_train.data.stage2 import Stage2Sampler
from sec_train.model.config import Mode


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
