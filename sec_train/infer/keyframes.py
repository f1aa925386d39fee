"""The keyframe bank: the object-outlined frames the LVLM sees when SeC asks it for a concept.

One bank per object. It starts with the prompted first frame; a later frame joins only when
the LVLM was used on it, the predicted mask is non-empty and the object-score logit is above 1
(SeC's rule, so only confidently re-found objects teach the concept). The LVLM gets the first
frame plus the latest `max_size - 1` frames, each with the object's contour drawn in green
(thickness 2) on the frame at its own resolution and then resized to the LVLM's, as SeC's
inference (`label_img_with_mask`, then `predict_forward`) and its stage-2 training data draw it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sec_train.data.draw import draw_contour
from sec_train.data.images import resize_image

DEFAULT_BANK_SIZE = 7
MIN_OBJECT_SCORE = 1.0


def joins_bank(used_lvlm: bool, mask: np.ndarray, object_score_logit: float) -> bool:
    """SeC's update rule: LVLM used on the frame, a non-empty mask and an object-score logit > 1."""
    return used_lvlm and bool(mask.any()) and object_score_logit > MIN_OBJECT_SCORE


@dataclass
class Keyframe:
    """A frame of the bank: its index in the video and the outlined image at LVLM resolution."""

    frame_index: int
    image: np.ndarray  # uint8 [P, P, 3]


class KeyframeBank:
    """First frame + the latest kept frames of one object, ready to show the LVLM.

    Args:
        image_size (`int`): the LVLM's square input side (448 for InternVL 2.5, 56 for the toy).
        max_size (`int`): how many frames the LVLM sees at most, the first frame included.
    """

    def __init__(self, image_size: int, max_size: int = DEFAULT_BANK_SIZE):
        if max_size < 1:
            raise ValueError(f"a keyframe bank holds at least the first frame, got max_size={max_size}")
        self.image_size = image_size
        self.max_size = max_size
        self._first: Keyframe | None = None
        self._recent: list[Keyframe] = []

    def __len__(self) -> int:
        return len(self.keyframes())

    def add(self, frame_index: int, frame: np.ndarray, mask: np.ndarray) -> None:
        """Adds uint8 `[H, W, 3]` `frame` with the object's bool `[H, W]` `mask` outlined on it."""
        if frame.shape[:2] != mask.shape:
            raise ValueError(f"frame {frame_index} is {frame.shape[:2]} but its mask is {mask.shape}")
        outlined = resize_image(draw_contour(frame, mask.astype(bool)), self.image_size)
        keyframe = Keyframe(frame_index, outlined)
        if self._first is None:
            self._first = keyframe
        else:
            # only the latest max_size - 1 are ever shown, so older ones are dropped
            self._recent = (self._recent + [keyframe])[-(self.max_size - 1) :] if self.max_size > 1 else []

    def update(
        self,
        frame_index: int,
        frame: np.ndarray,
        mask: np.ndarray,
        object_score_logit: float,
        used_lvlm: bool,
    ) -> bool:
        """Adds the frame if `joins_bank` accepts it; returns whether it did."""
        if not joins_bank(used_lvlm, mask, object_score_logit):
            return False
        self.add(frame_index, frame, mask)
        return True

    def keyframes(self) -> list[Keyframe]:
        """The frames the LVLM sees, oldest first: the first frame, then the latest ones."""
        return ([] if self._first is None else [self._first]) + self._recent

    def images(self) -> list[np.ndarray]:
        """The outlined uint8 `[P, P, 3]` images of `keyframes()`."""
        return [k.image for k in self.keyframes()]
