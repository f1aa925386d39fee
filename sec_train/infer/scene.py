"""The HSV-histogram scene-change detector that decides when SeC calls its LVLM.

As in the SeC release: both frames are resized to 1024 x 1024 (bilinear), converted to HSV
with OpenCV's 8-bit conventions (H in [0, 180), S and V in [0, 256)), histogrammed over H and S
with 60 x 80 bins, and compared with OpenCV's `compareHist(..., HISTCMP_BHATTACHARYYA)`; a
distance above the threshold (0.35) is a scene change. All of it is numpy/torch, bit-exact
with OpenCV's `cvtColor`, `calcHist` and `compareHist` on the same resized image.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

SCENE_IMAGE_SIZE = 1024
HUE_BINS = 60
SATURATION_BINS = 80
DEFAULT_THRESHOLD = 0.35

# OpenCV's fixed-point RGB->HSV (color_hsv.simd.hpp): divisions become table look-ups scaled
# by 2^12 and rounded half to even (cvRound), so the result matches it bit for bit.
_HSV_SHIFT = 12
_HSV_ROUND = 1 << (_HSV_SHIFT - 1)
_DIVISORS = np.arange(1, 256, dtype=np.float64)
_SAT_DIV = np.concatenate([[0], np.rint((255 << _HSV_SHIFT) / _DIVISORS)]).astype(np.int32)
_HUE_DIV = np.concatenate([[0], np.rint((180 << _HSV_SHIFT) / (6.0 * _DIVISORS))]).astype(np.int32)


def _bin_table(bins: int, upper: int) -> np.ndarray:
    """calcHist's uniform-bin look-up for 8-bit values in [0, upper); -1 outside the range."""
    values = np.arange(256, dtype=np.float64)
    index = np.clip(np.floor(values * (bins / float(upper))), 0, bins - 1).astype(np.int64)
    return np.where(values < upper, index, -1)


_HUE_BIN = _bin_table(HUE_BINS, 180)
_SAT_BIN = _bin_table(SATURATION_BINS, 256)


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """OpenCV's `cvtColor(image, COLOR_RGB2HSV)` for a uint8 `[H, W, 3]` RGB image."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    rgb = image.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    diff = v - rgb.min(axis=-1)
    s = (diff * _SAT_DIV[v] + _HSV_ROUND) >> _HSV_SHIFT
    # the hue's sector is decided by which channel is the max, red first, then green
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HUE_DIV[diff] + _HSV_ROUND) >> _HSV_SHIFT
    h = np.where(h < 0, h + 180, h)
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[H, W, 3]` -> `[size, size, 3]`, bilinear with half-pixel centres and no
    antialiasing, like `cv2.resize` (within one level); torch's uint8 kernel, no float copy."""
    tensor = torch.tensor(image).permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).numpy()


@functools.cache
def _colour_bins() -> np.ndarray:
    """The H-S bin of every 24-bit colour, indexed by `(r << 16) | (g << 8) | b` (-1: no bin).

    Built once (32 MB) from `rgb_to_hsv` itself, a block of 65,536 colours at a time, so a
    frame's histogram is one table look-up per pixel instead of the whole HSV arithmetic.
    """
    table = np.empty(1 << 24, dtype=np.int16)
    g, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    for r in range(256):
        hsv = rgb_to_hsv(np.stack([np.full_like(g, r), g, b], axis=-1))
        h_bin, s_bin = _HUE_BIN[hsv[..., 0]], _SAT_BIN[hsv[..., 1]]
        table[r << 16 : (r + 1) << 16] = np.where(h_bin >= 0, h_bin * SATURATION_BINS + s_bin, -1).ravel()
    return table


def hs_histogram(image: np.ndarray, size: int = SCENE_IMAGE_SIZE) -> np.ndarray:
    """The 60 x 80 hue-saturation histogram of a uint8 RGB frame resized to `size` x `size`.

    The release passes RGB frames to OpenCV's BGR->HSV conversion; the channels are reversed
    here so the histograms, and so the meaning of the 0.35 threshold, are the same as there.
    """
    bgr = resize_bilinear(image, size)[..., ::-1].astype(np.int32)
    bins = _colour_bins()[(bgr[..., 0] << 16) | (bgr[..., 1] << 8) | bgr[..., 2]]
    counts = np.bincount(bins[bins >= 0], minlength=HUE_BINS * SATURATION_BINS)
    return counts.reshape(HUE_BINS, SATURATION_BINS).astype(np.float64)


def bhattacharyya_distance(hist1: np.ndarray, hist2: np.ndarray) -> float:
    """OpenCV's HISTCMP_BHATTACHARYYA: `sqrt(1 - sum(sqrt(h1 * h2)) / sqrt(sum(h1) * sum(h2)))`.

    The formula is invariant to each histogram's scale, so the release's L2 normalization of
    both histograms before comparing them changes nothing and is left out.
    """
    if hist1.shape != hist2.shape:
        raise ValueError(f"histograms differ in shape: {hist1.shape} vs {hist2.shape}")
    coefficient = float(np.sqrt(hist1 * hist2).sum())
    scale = float(hist1.sum()) * float(hist2.sum())
    scale = 1.0 / np.sqrt(scale) if abs(scale) > np.finfo(np.float32).eps else 1.0
    return float(np.sqrt(max(1.0 - coefficient * scale, 0.0)))


class SceneChangeDetector:
    """Compares each frame with the one before it; a large histogram distance is a scene change.

    Args:
        threshold (`float`): Bhattacharyya distance above which a frame starts a new scene.
        size (`int`): side of the square the frames are resized to before histogramming.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, size: int = SCENE_IMAGE_SIZE):
        self.threshold = threshold
        self.size = size
        self.last_distance: float | None = None
        self._previous: np.ndarray | None = None

    def update(self, frame: np.ndarray) -> bool:
        """Feeds the next uint8 `[H, W, 3]` RGB frame; True if it differs from the previous one.

        The first frame has nothing to compare with and is never a scene change.
        """
        hist = hs_histogram(frame, self.size)
        previous, self._previous = self._previous, hist
        if previous is None:
            self.last_distance = None
            return False
        self.last_distance = bhattacharyya_distance(previous, hist)
        return self.last_distance > self.threshold
