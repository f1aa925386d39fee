"""Stage-2 sampler: the SeC recipe, one object of one video per example.

From the video's annotated frames: a target frame with `min_context`..`max_context` frames of
context before it; among the context frames where the object is visible, `min_refs`..`max_refs`
reference frames with its contour drawn in green at LVLM resolution; with probability
`noise_prob`, up to half of the middle references outline up to `max_noise_objects` other
objects instead (the LVLM must learn to pick the right concept). With `cut_target_prob` the target
is preferably a scene-cut frame. SAM 2 gets the target (and in `fused` mode the context before
it) at its resolution with the object's GT masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from sec_train.data.config import Stage2Config
from sec_train.data.draw import GREEN, contour_mask
from sec_train.data.images import (
    frame_chw,
    object_mask,
    resize_chw,
    resize_mask,
    sample_frame,
)
from sec_train.data.prompts import training_prompt
from sec_train.model.config import Mode
from sec_train.types import Stage2Example, VideoSample


@dataclass
class Stage2Plan:
    """Which annotated frames one example uses; `outlined[i]` is the object drawn on `refs[i]`."""

    target: int
    context: list[int]
    refs: list[int]
    outlined: list[int]


def draw_outline(image: np.ndarray, mask: np.ndarray, thickness: int) -> None:
    """Paints `draw_contour`'s green contour of `mask` onto uint8 [H, W, 3] `image` in place,
    computing it only around the mask (the same pixels, a fraction of the work)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return
    margin = thickness + 1  # the line reaches thickness - 1 pixels beyond the mask
    y0, y1 = max(rows[0] - margin, 0), rows[-1] + margin + 1
    x0, x1 = max(cols[0] - margin, 0), cols[-1] + margin + 1
    crop = image[y0:y1, x0:x1]
    crop[contour_mask(mask[y0:y1, x0:x1], thickness)] = GREEN


def read_obj_list(path: str | Path) -> dict[str, set[int]]:
    """Parses a "video_id obj_id" file (SA-V's `sav_video_obj_ids.txt`)."""
    objects: dict[str, set[int]] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected 'video_id obj_id', got {line!r}")
        objects.setdefault(parts[0], set()).add(int(parts[1]))
    return objects


class Stage2Sampler:
    """Makes `Stage2Example`s.

    Args:
        cfg: the recipe's frame, reference and noise counts.
        mode: "concept_only" (SAM 2 sees the target) or "fused" (context frames too).
        tokenizer: tokenizes the chat; `[SEG]` must be in it.
        lvlm_image_size, sam_image_size: square input sizes.
        num_image_tokens: `<IMG_CONTEXT>` tokens per frame.
    """

    def __init__(
        self,
        cfg: Stage2Config,
        *,
        mode: Mode,
        tokenizer: PreTrainedTokenizerBase,
        lvlm_image_size: int,
        sam_image_size: int,
        num_image_tokens: int,
    ):
        if mode not in ("concept_only", "fused"):
            raise ValueError(f"stage-2 sampler mode must be concept_only or fused, not {mode!r}")
        self.cfg, self.mode, self.tokenizer = cfg, mode, tokenizer
        self.lvlm_size = lvlm_image_size
        self.sam_size = sam_image_size
        self.num_image_tokens = num_image_tokens
        self.obj_list = read_obj_list(cfg.obj_list) if cfg.obj_list else None

    def units(self, header: dict[str, Any]) -> list[int | None]:
        """The video's objects (those `obj_list` names, when given)."""
        objects = [int(o) for o in header["object_ids"]]
        if self.obj_list is None:
            return objects
        listed = self.obj_list.get(header["video"], set())
        return [o for o in objects if o in listed]

    def __call__(self, sample: VideoSample, obj: int | None, rng: np.random.Generator) -> Stage2Example:
        plan = self.plan(sample.header, obj, rng)
        lvlm = [self._outlined(sample, p, o) for p, o in zip(plan.refs, plan.outlined)]
        target = sample_frame(sample, plan.target, max(self.lvlm_size, self.sam_size))  # decoded once
        lvlm.append(resize_chw(target, self.lvlm_size))
        sam_positions = [plan.target] if self.mode == "concept_only" else [*plan.context, plan.target]
        sam_images = [frame_chw(sample, p, self.sam_size) for p in sam_positions[:-1]]
        sam_images.append(resize_chw(target, self.sam_size))
        sam_masks = [
            torch.from_numpy(resize_mask(object_mask(sample, p, obj), self.sam_size)) for p in sam_positions
        ]
        input_ids, labels = training_prompt(self.tokenizer, len(lvlm), self.num_image_tokens, rng)
        return Stage2Example(
            key=f"{sample.key}/{obj}",
            input_ids=input_ids,
            labels=labels,
            lvlm_images=torch.stack(lvlm),
            sam_images=torch.stack(sam_images),
            sam_masks=torch.stack(sam_masks),
        )

    def _outlined(self, sample: VideoSample, pos: int, obj: int) -> torch.Tensor:
        image = resize_chw(sample_frame(sample, pos, self.lvlm_size), self.lvlm_size)
        mask = resize_mask(object_mask(sample, pos, obj), self.lvlm_size)
        draw_outline(image.permute(1, 2, 0).numpy(), mask, self.cfg.contour_thickness)
        return image

    def plan(self, header: dict[str, Any], obj: int, rng: np.random.Generator) -> Stage2Plan:
        """Draws the target, context, references and noise; raises if the video cannot give them."""
        cfg = self.cfg
        visible = sorted(header["visible"].get(str(obj), []))
        if not visible:
            raise ValueError(f"object {obj} is never visible")
        n = len(header["frame_indices"])
        # a target needs a visible frame among the (at most max_context) frames before it
        targets = [t for t in range(cfg.min_context, n) if any(t - cfg.max_context <= v < t for v in visible)]
        if not targets:
            raise ValueError(f"object {obj}: no target frame of {n} has it visible in the context before")
        target = int(rng.choice(self._cut_targets(header, targets, rng) or targets))
        latest = max(v for v in visible if v < target)
        num_context = int(
            rng.integers(max(cfg.min_context, target - latest), min(cfg.max_context, target) + 1)
        )
        context = list(range(target - num_context, target))
        candidates = [v for v in visible if v >= context[0] and v < target]
        num_refs = int(
            rng.integers(min(cfg.min_refs, len(candidates)), min(cfg.max_refs, len(candidates)) + 1)
        )
        refs = sorted(int(r) for r in rng.choice(candidates, num_refs, replace=False))
        return Stage2Plan(target, context, refs, self._noise(header, obj, refs, rng))

    def _cut_targets(self, header: dict[str, Any], targets: list[int], rng: np.random.Generator) -> list[int]:
        """The scene-cut frames among `targets`, with probability `cut_target_prob` (else none)."""
        cuts = [t for t in header.get("scene_cuts", []) if t in targets]
        if not cuts or self.cfg.cut_target_prob <= 0 or rng.random() >= self.cfg.cut_target_prob:
            return []
        return cuts

    def _noise(
        self, header: dict[str, Any], obj: int, refs: list[int], rng: np.random.Generator
    ) -> list[int]:
        """The object outlined on each reference: `obj`, or a noise object on up to half of the
        middle references (those visible there)."""
        outlined = [obj] * len(refs)
        others = [int(o) for o in header["object_ids"] if int(o) != obj and header["visible"].get(str(o))]
        middle = list(range(1, len(refs) - 1))
        if not others or len(middle) < 2 or rng.random() >= self.cfg.noise_prob:
            return outlined
        noise = rng.permutation(others)[: self.cfg.max_noise_objects]
        count = int(rng.integers(1, len(middle) // 2 + 1))
        for i in sorted(rng.choice(middle, count, replace=False)):
            there = [int(o) for o in noise if refs[i] in header["visible"][str(o)]]
            if there:
                outlined[i] = there[int(rng.integers(len(there)))]
        return outlined
