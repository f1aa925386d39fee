"""Output post-processing of the released SeC predictor: small holes filled, overlaps resolved.

`fill_holes` is SAM 2's `fill_holes_in_mask_scores` (`sam2/utils/misc.py`), which SeC's
predictor applies to each tracked frame's low-resolution mask logits with `fill_hole_area=8`
(OpenIXCLab/SeC `inference/sam2_video_predictor.py:41,454`); SAM 2 finds the background's
connected components with a CUDA kernel, this module with a few pooling steps that run anywhere.
`compose_labels` writes per-object logits into one id map, an overlap going to the highest logit
as SeC's VOS inference does (`vos_evaluation/vos_inference.py:237`, SAM 2's
`_apply_non_overlapping_constraints`), or to the lower id.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

OverlapRule = Literal["highest_logit", "lower_id"]

# the logit a filled hole gets: just foreground, as SAM 2 fills
_HOLE_LOGIT = 0.1


def fill_holes(mask_logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Turns every background component (logit <= 0, 8-connected) of at most `max_area` pixels
    into foreground with logit 0.1, as SAM 2's `fill_holes_in_mask_scores`.

    A component touching the border counts too, as in SAM 2.

    Args:
        mask_logits (`torch.Tensor` of shape `(N, 1, H, W)`): mask logits.
        max_area (`int`): the largest component filled; 0 returns the logits unchanged.

    Returns:
        `torch.Tensor`: the logits with the small background components filled.
    """
    if max_area < 0:
        raise ValueError(f"fill_hole_area must be >= 0, got {max_area}")
    if max_area == 0:
        return mask_logits
    return torch.where(_small_components(mask_logits <= 0, max_area), _HOLE_LOGIT, mask_logits)


def _small_components(region: torch.Tensor, max_area: int) -> torch.Tensor:
    """Where `region` [N, 1, H, W] (bool) lies in an 8-connected component of <= `max_area` pixels.

    Each pixel takes the smallest pixel index within `max_area` steps inside the region. A
    component of <= max_area pixels is then labelled by its smallest index throughout; a label
    whose pixels all agree with all their region neighbours is a closed set, i.e. a whole
    component, and its pixel count is that component's area. A larger component never yields a
    closed label of <= max_area pixels, so the test is exact.
    """
    n, _, h, w = region.shape
    big = float(h * w + 1)  # stands for "not in the region"
    index = torch.arange(h * w, dtype=torch.float32, device=region.device).view(1, 1, h, w)
    outside = ~region
    labels = index.expand(n, 1, h, w).masked_fill(outside, big)
    for _ in range(max_area):
        labels = _pool3x3(labels, torch.minimum, big).masked_fill_(outside, big)
    # every region neighbour (and the pixel itself) carries the same label
    low = _pool3x3(labels, torch.minimum, big)
    high = _pool3x3(labels.masked_fill(outside, -1.0), torch.maximum, -1.0)
    agrees = region & (low == labels) & (high == labels)
    # per (object, label): pixel count and count of disagreeing pixels
    flat = (labels.long() + torch.arange(n, device=region.device).view(n, 1, 1, 1) * (h * w + 2)).flatten()
    inside = region.flatten()
    size = n * (h * w + 2)
    area = torch.bincount(flat[inside], minlength=size)
    open_ = torch.bincount(flat[inside & ~agrees.flatten()], minlength=size)
    small = (area <= max_area) & (open_ == 0)
    return (small[flat] & inside).view(n, 1, h, w)


def _pool3x3(x: torch.Tensor, op, fill: float) -> torch.Tensor:
    """`op` (torch.minimum / maximum) over each pixel's 3x3 neighbourhood of [N, 1, H, W],
    separably; outside the image counts as `fill` (cheaper than max_pool2d on the CPU)."""
    p = F.pad(x, (1, 1, 1, 1), value=fill)
    rows = op(op(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])
    return op(op(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def compose_labels(
    scores: dict[int, np.ndarray], shape: tuple[int, int], overlap: OverlapRule = "highest_logit"
) -> np.ndarray:
    """Per-object mask logits (or bool masks) `{id: [H, W]}` -> one uint8 `[H, W]` id map.

    A pixel is an object's where its score is > 0. Where several objects claim it,
    "highest_logit" gives it to the highest score (SeC's VOS inference; a tie to the lower id),
    "lower_id" to the lower id (objects painted from the highest id down, as SAM 2's VOS
    inference writes them without that constraint).
    """
    labels = np.zeros(shape, dtype=np.uint8)
    if not scores:
        return labels
    ids = sorted(scores)
    stacked = np.stack([np.asarray(scores[i], dtype=np.float32) for i in ids])
    if overlap == "highest_logit":
        best = stacked.argmax(axis=0)
        found = np.take_along_axis(stacked, best[None], axis=0)[0] > 0
        labels[found] = np.asarray(ids, dtype=np.uint8)[best[found]]
    elif overlap == "lower_id":
        for i, obj in reversed(list(enumerate(ids))):
            labels[stacked[i] > 0] = obj
    else:
        raise ValueError(f"overlap must be 'highest_logit' or 'lower_id', got {overlap!r}")
    return labels
