"""Hand-built toy batches for the SeC model tests, following the contracts in `sec_train.types`.

Kept independent of the data pipeline on purpose: the model is tested against the batch
contract, not against one sampler's output.
"""

from __future__ import annotations

import pytest
import torch

from sec_train.tokens import IMG_CONTEXT, IMG_END, IMG_START
from sec_train.types import Stage1Batch, Stage2Batch

QUESTION = (
    "Please segment the object in the last frame based on the object labeled in the first several images."
)
ANSWER = "It is [SEG].<|im_end|>\n"


def prompt_ids(model, num_frames: int, answer: str = ANSWER) -> tuple[list[int], list[int]]:
    """Chat-template token ids of one sample and its labels (-100 outside the answer)."""
    tokenizer = model.tokenizer
    frames = "".join(
        f"{IMG_START}{IMG_CONTEXT * model.num_image_tokens}{IMG_END}\n" for _ in range(num_frames)
    )
    messages = [{"role": "user", "content": frames + QUESTION}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_part = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_part = tokenizer(answer, add_special_tokens=False).input_ids
    return prompt_part + answer_part, [-100] * len(prompt_part) + answer_part


def square_clip(num_frames: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright square drifting over noise: uint8 frames [T, 3, S, S] and bool masks [T, S, S]."""
    images = torch.randint(0, 80, (num_frames, 3, size, size), generator=generator, dtype=torch.uint8)
    masks = torch.zeros(num_frames, size, size, dtype=torch.bool)
    side = size // 4
    for t in range(num_frames):
        top, left = size // 4 + 2 * t, size // 3 + 3 * t
        masks[t, top : top + side, left : left + side] = True
        images[t, :, top : top + side, left : left + side] = 220
    return images, masks


def stage2_batch(
    model, refs: tuple[int, ...] = (2, 1), sam_frames: tuple[int, ...] = (3, 2), seed: int = 0
) -> Stage2Batch:
    """B samples with `refs[b]` reference frames and `sam_frames[b]` SAM frames (target last)."""
    generator = torch.Generator().manual_seed(seed)
    ids, labels = zip(*(prompt_ids(model, r + 1) for r in refs))
    length = -(-max(len(x) for x in ids) // 8) * 8
    pad = model.tokenizer.pad_token_id
    input_ids = torch.full((len(refs), length), pad, dtype=torch.long)
    label_tensor = torch.full((len(refs), length), -100, dtype=torch.long)
    attention_mask = torch.zeros(len(refs), length, dtype=torch.long)
    for b, (x, y) in enumerate(zip(ids, labels)):
        input_ids[b, : len(x)] = torch.tensor(x)
        label_tensor[b, : len(y)] = torch.tensor(y)
        attention_mask[b, : len(x)] = 1
    size = model.lvlm_image_size
    lvlm_images = torch.randint(
        0, 256, (sum(refs) + len(refs), 3, size, size), generator=generator, dtype=torch.uint8
    )
    clips = [square_clip(t, model.sam_image_size, generator) for t in sam_frames]
    return Stage2Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=label_tensor,
        lvlm_images=lvlm_images,
        lvlm_frames_per_sample=torch.tensor([r + 1 for r in refs]),
        sam_images=torch.cat([c[0] for c in clips]),
        sam_masks=torch.cat([c[1] for c in clips]),
        sam_frames_per_sample=torch.tensor(sam_frames),
        keys=[f"video{b}/obj1" for b in range(len(refs))],
    )


def stage1_batch(model, clips: int = 1, frames: int = 4, objects: int = 2, seed: int = 0) -> Stage1Batch:
    """B clips of T frames with K square objects each (the last object of the last clip padding)."""
    generator = torch.Generator().manual_seed(seed)
    size = model.sam_image_size
    images = torch.zeros(clips, frames, 3, size, size, dtype=torch.uint8)
    masks = torch.zeros(clips, frames, objects, size, size, dtype=torch.bool)
    for b in range(clips):
        for k in range(objects):
            clip, mask = square_clip(frames, size, generator)
            images[b] = torch.maximum(images[b], clip.flip(-1) if k else clip)
            masks[b, :, k] = mask.flip(-1) if k else mask
    object_valid = torch.ones(clips, objects, dtype=torch.bool)
    if objects > 1:
        object_valid[-1, -1] = False
        masks[-1, :, -1] = False
    return Stage1Batch(
        images=images, masks=masks, object_valid=object_valid, keys=[f"clip{b}" for b in range(clips)]
    )


@pytest.fixture
def single_thread():
    """Toy-sized ops run faster on one thread than on several contended ones (shared CI cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
