"""Released post-processing: SAM 2's hole filling and SeC's highest-logit overlap rule, against
Meta's `sam2` functions themselves (their CUDA connected components replaced by scipy's)."""

import numpy as np
import pytest
import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2.utils import misc
from scipy import ndimage

from sec_train.infer.postprocess import compose_labels, fill_holes


def scipy_connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM 2's `get_connected_components` contract (8-connectivity; labels and per-pixel areas of
    the foreground, 0 elsewhere) computed by scipy."""
    labels, areas = torch.zeros_like(mask, dtype=torch.int32), torch.zeros_like(mask, dtype=torch.int32)
    for i in range(mask.shape[0]):
        lab, _ = ndimage.label(mask[i, 0].numpy(), structure=np.ones((3, 3)))
        counts = np.bincount(lab.ravel())
        counts[0] = 0
        labels[i, 0] = torch.from_numpy(lab.astype(np.int32))
        areas[i, 0] = torch.from_numpy(counts[lab].astype(np.int32))
    return labels, areas


def sam2_fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    original = misc.get_connected_components
    misc.get_connected_components = scipy_connected_components
    try:
        return misc.fill_holes_in_mask_scores(logits, max_area)
    finally:
        misc.get_connected_components = original


def blobby_logits(seed: int, n: int = 3, size: int = 48) -> torch.Tensor:
    """Smoothed noise: foreground with holes and background with islands of many sizes."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, size // 4, size // 4, generator=g)
    coarse = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear")
    return coarse + 0.8 * torch.randn(n, 1, size, size, generator=g) + 0.6


@pytest.mark.parametrize("max_area", [1, 8, 20])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_holes_matches_sam2(seed, max_area):
    logits = blobby_logits(seed)
    expected = sam2_fill_holes(logits, max_area)
    assert not torch.equal(expected, logits)  # the case has holes to fill
    torch.testing.assert_close(fill_holes(logits, max_area), expected, rtol=0, atol=0)


def test_hole_sizes_and_diagonal_connectivity():
    logits = torch.full((1, 1, 20, 20), 5.0)
    logits[0, 0, 2:4, 2:6] = -1.0  # 8 px: filled
    logits[0, 0, 10:13, 2:5] = -1.0  # 9 px: kept
    logits[0, 0, 2:4, 12:14] = -2.0  # 4 px touching the next 4 px at a corner: one 8-px hole
    logits[0, 0, 4:6, 14:16] = -2.0
    logits[0, 0, 10:12, 12:14] = -3.0  # 4 px + 5 px touching at a corner: 9 px, kept
    logits[0, 0, 12, 14:19] = -3.0
    logits[0, 0, 18:20, 0:2] = -1.0  # 4 px at the border: background, but small, so filled
    out = fill_holes(logits, 8)
    filled = (out == 0.1) & (logits <= 0)
    assert filled[0, 0, 2:4, 2:6].all() and not filled[0, 0, 10:13, 2:5].any()
    assert filled[0, 0, 2:6, 12:16].sum() == 8
    assert not filled[0, 0, 10:13, 12:19].any()
    assert filled[0, 0, 18:20, 0:2].all()
    assert torch.equal(out[logits > 0], logits[logits > 0])
    assert torch.equal(fill_holes(logits, 0), logits)


def sam2_vos_labels(scores: dict[int, np.ndarray]) -> np.ndarray:
    """SeC's vos_inference.py for DAVIS-style output: `_apply_non_overlapping_constraints`, then
    `scores > 0` per object, written by `put_per_obj_mask` (highest id first)."""
    ids = sorted(scores)
    stacked = torch.from_numpy(np.stack([scores[i] for i in ids]))[:, None]
    constrained = SAM2Base._apply_non_overlapping_constraints(None, stacked)
    labels = np.zeros(stacked.shape[-2:], dtype=np.uint8)
    for i in reversed(range(len(ids))):
        labels[(constrained[i, 0] > 0).numpy()] = ids[i]
    return labels


def test_overlaps_go_to_the_highest_logit_as_sec_writes_them():
    g = np.random.default_rng(0)
    scores = {obj: g.normal(size=(30, 40)).astype(np.float32) for obj in (7, 3, 12)}
    scores[3][:5] = scores[7][:5]  # ties go to the lower id
    got = compose_labels(scores, (30, 40))
    np.testing.assert_array_equal(got, sam2_vos_labels(scores))
    assert (got == 7).any() and (got == 12).any() and (got == 0).any()


def test_overlap_rules_differ_where_the_higher_id_is_more_confident():
    low, high = np.full((2, 2), -1.0), np.full((2, 2), -1.0)
    low[0], high[:, 0] = 2.0, 5.0  # both claim pixel (0, 0); 9 is more confident there
    assert compose_labels({3: low, 9: high}, (2, 2)).tolist() == [[9, 3], [9, 0]]
    assert compose_labels({3: low, 9: high}, (2, 2), "lower_id").tolist() == [[3, 3], [9, 0]]
    assert compose_labels({}, (2, 2)).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="overlap must be"):
        compose_labels({3: low}, (2, 2), "first")
