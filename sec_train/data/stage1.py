"""Stage-1 sampler: a clip of `num_frames` annotated frames and up to `max_objects` objects,
augmented consistently, at SAM 2's resolution.

The frames follow SAM 2's `JSONRawDataset` + `RandomUniformSampler` as SeC's stage 1 configures
them (official `training/sam2/training/dataset/vos_raw_dataset.py:285-312`,
`vos_sampler.py:44-77`): the pool is every `stride`-th annotated frame, shuffled when `shuffle`,
and a clip is a window of `num_frames` consecutive pool entries whose first frame shows an object.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sec_train.data.augment import ClipAugment
from sec_train.data.config import Stage1Config
from sec_train.data.images import object_mask, sample_frame, to_chw
from sec_train.types import Stage1Example, VideoSample


class Stage1Sampler:
    """Makes one `Stage1Example` per video.

    The clip's first frame shows at least one object (it is prompted with the GT masks); the
    objects are drawn among those visible there. With `cfg.shuffle` the clip is random frames in
    random order, otherwise consecutive pool frames in time order.

    Args:
        cfg: clip length, stride, object count and augmentations.
        sam_image_size: the output square size.
    """

    def __init__(self, cfg: Stage1Config, sam_image_size: int):
        self.cfg = cfg
        self.size = sam_image_size

    def units(self, header: dict[str, Any]) -> list[int | None]:
        """One unit per video."""
        return [None]

    def __call__(self, sample: VideoSample, obj: int | None, rng: np.random.Generator) -> Stage1Example:
        positions, objects = self.pick(sample.header, rng)
        h, w = sample.header["height"], sample.header["width"]
        augment = ClipAugment.draw(self.cfg.augment, rng, len(positions), h, w, self.size)
        images = torch.empty(len(positions), 3, self.size, self.size, dtype=torch.uint8)
        masks = torch.empty(len(positions), len(objects), self.size, self.size, dtype=torch.bool)
        for i, p in enumerate(positions):  # one frame at a time: a clip of full frames is large
            image = to_chw(np.array(sample_frame(sample, p, self.size)))
            frame_masks = torch.from_numpy(np.stack([object_mask(sample, p, o) for o in objects]))
            images[i], masks[i] = augment.apply(i, image, frame_masks)
        return Stage1Example(key=sample.key, images=images, masks=masks)

    def pick(self, header: dict[str, Any], rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """(annotated frame positions of the clip, object ids); raises if the video cannot give one."""
        n = len(header["frame_indices"])
        pool = np.arange(0, n, self.cfg.stride)
        if len(pool) < self.cfg.num_frames:
            raise ValueError(
                f"video has {n} annotated frames: {len(pool)} at stride {self.cfg.stride}, "
                f"a clip needs {self.cfg.num_frames}"
            )
        if self.cfg.shuffle:
            pool = rng.permutation(pool)
        visible_at: dict[int, list[int]] = {}
        for obj, frames in header["visible"].items():
            for p in frames:
                visible_at.setdefault(p, []).append(int(obj))
        # the official sampler redraws a window until its first frame shows an object: the same
        # as drawing uniformly among the windows that do
        starts = [s for s in range(len(pool) - self.cfg.num_frames + 1) if visible_at.get(int(pool[s]))]
        if not starts:
            raise ValueError("no object is visible on any possible first frame of a clip")
        start = int(rng.choice(starts))
        candidates = sorted(visible_at[int(pool[start])])
        chosen = rng.permutation(len(candidates))[: self.cfg.max_objects]
        objects = [candidates[i] for i in sorted(chosen)]
        return [int(p) for p in pool[start : start + self.cfg.num_frames]], objects
