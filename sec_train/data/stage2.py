"""Stage-2 sampler: the SeC recipe, one object of one video per example, drawn as the official
`SegJSONDataset` draws it (`training/sec/dataloaders/sec_seg_dataset.py:202-259, 332-406`).

From the video's annotated frames: a start frame where the object is visible and a target
`min_context`..`max_context` frames after it; `min_refs`..`max_refs` reference frames among the
object's other visible frames anywhere in the video (before or after the target), in random
order, each with the object's contour drawn in green on the frame at its original resolution,
then resized to the LVLM's; the target last. With `add_noise`, 0..`max_noise_objects` other
objects (uniformly many) draw reference frames of their own, outlined around them, and those
replace a random number of the references after the first. SAM 2 gets the target (and in
`fused` mode the frames from the start frame on) at its resolution with the object's GT masks.
With `cut_target_prob` (not in SeC's recipe) the target is preferably a scene-cut frame.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    """Which annotated frames one example uses: the object is visible on `start`, SAM 2's clip
    runs from there to `target`; `outlined[i]` is the object drawn on reference `refs[i]`."""

    start: int
    target: int
    refs: list[int]
    outlined: list[int]

    @property
    def context(self) -> list[int]:
        """The frames between the start frame and the target (SAM 2's memory in `fused` mode)."""
        return list(range(self.start, self.target))


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
        """The frame with the object's contour drawn at its original resolution, then resized."""
        image = np.array(sample_frame(sample, pos))
        draw_outline(image, object_mask(sample, pos, obj), self.cfg.contour_thickness)
        return resize_chw(image, self.lvlm_size)

    def plan(self, header: dict[str, Any], obj: int, rng: np.random.Generator) -> Stage2Plan:
        """Draws the frames and the noise; raises if the object cannot give an example."""
        visible = header["visible"].get(str(obj), [])
        if not visible:
            raise ValueError(f"object {obj} is never visible")
        cuts = self._cut_targets(header, rng)
        start, target, refs = self._frames(sorted(visible), len(header["frame_indices"]), rng, cuts)
        if self.mode == "fused" and start == target:
            raise ValueError(
                f"object {obj} is visible only on the last frame: fused mode needs a frame before"
            )
        outlined = [obj] * len(refs)
        if self.cfg.add_noise:
            self._add_noise(header, obj, refs, outlined, rng)
        return Stage2Plan(start, target, refs, outlined)

    def _cut_targets(self, header: dict[str, Any], rng: np.random.Generator) -> list[int]:
        """The video's scene-cut frames with probability `cut_target_prob`, else none (and no
        draw from `rng` when the option is off, so the official draw is unchanged)."""
        cuts = [int(c) for c in header.get("scene_cuts", [])]
        if not cuts or self.cfg.cut_target_prob <= 0 or rng.random() >= self.cfg.cut_target_prob:
            return []
        return cuts

    def _frames(
        self, visible: list[int], n: int, rng: np.random.Generator, cuts: Sequence[int] = ()
    ) -> tuple[int, int, list[int]]:
        """(start, target, references) of an object visible on `visible` of `n` annotated
        frames, by the official `_sample_frames` (sec_seg_dataset.py:379-406); a target among
        `cuts` that a visible start frame reaches within the context range wins."""
        cfg = self.cfg
        offset = int(rng.integers(cfg.min_context, cfg.max_context + 1))
        num_refs = int(rng.integers(cfg.min_refs, cfg.max_refs + 1))
        at_cut = [
            (v, c) for c in cuts if c < n for v in visible if cfg.min_context <= c - v <= cfg.max_context
        ]
        starts = [v for v in visible if v + offset < n - 1]
        if at_cut:
            start, target = at_cut[int(rng.integers(len(at_cut)))]
        elif starts:
            start = int(rng.choice(starts))
            target = start + offset
        else:  # too short for this offset: the first visible frame and the last frame
            start, target = visible[0], n - 1
        # the other visible frames, in Python's set order as the official code lists them; a
        # random subset in random order when there are more than it asks for
        others = list(set(visible) - {start, target})
        if cfg.refs_before_target and any(r < target for r in others):
            others = [r for r in others if r < target]
        if len(others) > num_refs:
            others = [int(r) for r in rng.choice(others, num_refs, replace=False)]
        return start, target, others

    def _add_noise(
        self, header: dict[str, Any], obj: int, refs: list[int], outlined: list[int], rng: np.random.Generator
    ) -> None:
        """Replaces some references after the first by other objects' own outlined references,
        in place (sec_seg_dataset.py:232-259)."""
        n = len(header["frame_indices"])
        others = [int(o) for o in header["object_ids"] if int(o) != obj and header["visible"].get(str(o))]
        count = int(rng.integers(0, min(self.cfg.max_noise_objects, len(others)) + 1))
        if count == 0 or len(refs) < 2:
            return
        pool = []
        for other in rng.choice(others, count, replace=False):
            visible = sorted(header["visible"][str(other)])
            pool += [(r, int(other)) for r in self._frames(visible, n, rng)[2]]
        pool = [pool[i] for i in rng.permutation(len(pool))]
        most = min((len(refs) - 1) // 2, len(pool))
        num_replace = most if most < 2 else int(rng.integers(1, most + 1))
        replaced = sorted(rng.choice(range(1, len(refs)), num_replace, replace=False))
        for (frame, other), i in zip(pool, replaced):
            refs[i], outlined[i] = frame, other
