"""Drawing an object's contour on a frame, as SeC marks the object in its reference frames.

The original draws with OpenCV's `drawContours(..., thickness=2)` in green; here the contour
is the mask's inner boundary grown by `thickness - 1` pixels, with numpy only.
"""

from __future__ import annotations

import numpy as np

GREEN = (0, 255, 0)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def contour_mask(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Pixels of a `thickness`-wide line along the boundary of a binary [H, W] mask."""
    mask = mask.astype(bool)
    padded = np.pad(mask, 1)
    h, w = mask.shape
    interior = mask.copy()
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        interior &= padded[dy : dy + h, dx : dx + w]
    line = mask & ~interior
    for _ in range(thickness - 1):
        line = _dilate(line)
    return line


def draw_contour(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = GREEN, thickness: int = 2
) -> np.ndarray:
    """A copy of the uint8 [H, W, 3] `image` with the contour of `mask` drawn in `color`."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image is {image.shape[:2]} but mask is {mask.shape}")
    out = image.copy()
    out[contour_mask(mask, thickness)] = color
    return out
