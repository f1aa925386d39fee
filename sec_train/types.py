"""The contracts between data, model and trainer.

The data path runs shard -> sample -> example -> batch -> model -> losses -> step:

- `VideoSample`: one video as a shard stores it and the shard reader yields it. Frames stay
  JPEG bytes and masks stay COCO RLE until a sampler picks the few it needs.
- `Stage1Example` / `Stage2Example`: what a sampler yields for one training example.
- `Stage1Batch` / `Stage2Batch`: what a collator yields and `SeCModel.forward` takes. Images
  are uint8 on the host; the model normalizes them on device in its compute dtype.
- `LossDict`: what the model returns and the loop logs; "loss" is the weighted total.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

LossDict = dict[str, torch.Tensor]


@dataclass
class VideoSample:
    """One video of a shard.

    `frames[i]` is the JPEG of annotated frame i; `masks[i][j]` is the COCO RLE dict of object
    `header["object_ids"][j]` on that frame, or None where the object is absent.
    Header keys (the shard format's `HEADER_KEYS`): source, video, height, width, fps,
    frame_indices (the source video's frame number of each annotated frame), object_ids (ints)
    and visible (object id as str -> positions of the annotated frames where its mask is non-empty).
    """

    key: str
    shard: str
    header: dict[str, Any]
    frames: list[bytes]
    masks: list[list[dict | None]]


@dataclass
class Stage1Example:
    """A clip for pixel-level association: T frames, K objects, at SAM resolution."""

    key: str
    images: torch.Tensor  # uint8 [T, 3, S, S]
    masks: torch.Tensor  # bool [T, K, S, S]


@dataclass
class Stage2Example:
    """One object of one video for concept guidance.

    `lvlm_images` are the reference frames (contour drawn) then the target frame, at LVLM
    resolution. `sam_images` are the SAM 2 clip whose last frame is the target; in
    `concept_only` mode it holds the target frame alone, in `fused` mode the context frames
    before it too. `sam_masks` are the object's GT masks on those frames.
    """

    key: str
    input_ids: torch.Tensor  # long [L]
    labels: torch.Tensor  # long [L], -100 outside the answer
    lvlm_images: torch.Tensor  # uint8 [R + 1, 3, P, P]
    sam_images: torch.Tensor  # uint8 [T, 3, S, S]
    sam_masks: torch.Tensor  # bool [T, S, S]


class _Batch:
    """Moves every tensor field to a device; accelerate's `send_to_device` calls `.to`."""

    def to(self, device: torch.device | str, non_blocking: bool = False):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, value.to(device, non_blocking=non_blocking))
        return self

    def pin_memory(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, value.pin_memory())
        return self


@dataclass
class Stage1Batch(_Batch):
    """B clips of the same length T with up to K objects each."""

    images: torch.Tensor  # uint8 [B, T, 3, S, S]
    masks: torch.Tensor  # bool [B, T, K, S, S]
    object_valid: torch.Tensor  # bool [B, K]; False for padding objects
    keys: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return self.images.shape[0]


@dataclass
class Stage2Batch(_Batch):
    """B objects; variable frame counts are packed into contiguous tensors."""

    input_ids: torch.Tensor  # long [B, L], L a multiple of 8
    attention_mask: torch.Tensor  # long [B, L]
    labels: torch.Tensor  # long [B, L], -100 on padding and prompt
    lvlm_images: torch.Tensor  # uint8 [sum R_b + 1, 3, P, P]
    lvlm_frames_per_sample: torch.Tensor  # long [B]
    sam_images: torch.Tensor  # uint8 [sum T_b, 3, S, S]
    sam_masks: torch.Tensor  # bool [sum T_b, S, S]
    sam_frames_per_sample: torch.Tensor  # long [B]
    keys: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return self.input_ids.shape[0]


Batch = Stage1Batch | Stage2Batch
