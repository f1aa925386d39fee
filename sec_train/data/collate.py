"""Collators: examples -> the batches `SeCModel.forward` takes.

Images stay uint8 (the model normalizes on device in its compute dtype); token ids are padded
to a multiple of 8 for tensor-core friendly shapes.
"""

from __future__ import annotations

import torch

from sec_train.types import Stage1Batch, Stage1Example, Stage2Batch, Stage2Example

PAD_MULTIPLE = 8
IGNORE_INDEX = -100


def collate_stage1(examples: list[Stage1Example]) -> Stage1Batch:
    """Stacks clips of equal length; objects are padded to the batch's largest count."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    lengths = {e.images.shape[0] for e in examples}
    if len(lengths) != 1:
        raise ValueError(f"stage-1 clips must share one length, got {sorted(lengths)}")
    max_objects = max(e.masks.shape[1] for e in examples)
    t, _, h, w = examples[0].images.shape
    masks = torch.zeros(len(examples), t, max_objects, h, w, dtype=torch.bool)
    valid = torch.zeros(len(examples), max_objects, dtype=torch.bool)
    for b, e in enumerate(examples):
        k = e.masks.shape[1]
        masks[b, :, :k] = e.masks
        valid[b, :k] = True
    return Stage1Batch(
        images=torch.stack([e.images for e in examples]),
        masks=masks,
        object_valid=valid,
        keys=[e.key for e in examples],
    )


class Stage2Collator:
    """Pads token ids with `pad_token_id`, builds the attention mask and packs the frames.

    Args:
        pad_token_id: the tokenizer's padding id.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[Stage2Example]) -> Stage2Batch:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        longest = max(e.input_ids.numel() for e in examples)
        length = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
        input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(examples), length), dtype=torch.long)
        for b, e in enumerate(examples):
            n = e.input_ids.numel()
            input_ids[b, :n], labels[b, :n], attention[b, :n] = e.input_ids, e.labels, 1
        return Stage2Batch(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels,
            lvlm_images=torch.cat([e.lvlm_images for e in examples]),
            lvlm_frames_per_sample=torch.tensor([e.lvlm_images.shape[0] for e in examples]),
            sam_images=torch.cat([e.sam_images for e in examples]),
            sam_masks=torch.cat([e.sam_masks for e in examples]),
            sam_frames_per_sample=torch.tensor([e.sam_images.shape[0] for e in examples]),
            keys=[e.key for e in examples],
        )
