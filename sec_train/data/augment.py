"""Stage-1 clip augmentations (SAM 2's training transforms), with torch only.

Per clip: horizontal flip, affine (rotation and x-shear about the centre), resize to a square,
colour jitter and grayscale, all drawn once and applied to every frame and mask; then a second
colour jitter drawn per frame. Flip, affine and resize are one `grid_sample` from the original
frame straight to the output size. Frames are augmented one at a time, so a 30-frame clip of
1080p video never sits in memory as float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sec_train.data.config import AugmentConfig

_GRAY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def warp_theta(flip: bool, angle: float, shear: float, height: int, width: int) -> torch.Tensor:
    """The `affine_grid` matrix [1, 2, 3] mapping output to source normalized coordinates.

    The output square is the original frame resized, then rotated by `angle` and sheared by
    `shear` degrees about its centre (in original pixel units), then flipped.
    """
    a, s = math.radians(angle), math.radians(shear)
    # positive angles turn counter-clockwise on screen (y points down), as torchvision's do
    rotate = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
    forward = rotate @ torch.tensor([[1.0, math.tan(s)], [0.0, 1.0]], dtype=torch.float64)
    to_pixels = torch.diag(torch.tensor([width / 2, height / 2], dtype=torch.float64))
    mirror = torch.diag(torch.tensor([-1.0 if flip else 1.0, 1.0], dtype=torch.float64))
    # output (normalized) -> centred pixels -> undo affine -> undo flip -> source normalized
    linear = torch.linalg.inv(to_pixels) @ torch.linalg.inv(forward) @ mirror @ to_pixels
    theta = torch.zeros(1, 2, 3, dtype=torch.float64)
    theta[0, :, :2] = linear
    return theta.float()


def warp_grid(flip: bool, angle: float, shear: float, height: int, width: int, size: int) -> torch.Tensor:
    """The `grid_sample` grid [1, size, size, 2] of `warp_theta` for a `height` x `width` frame.

    The grid is in normalized coordinates, so it also serves a frame decoded at a reduced scale.
    """
    theta = warp_theta(flip, angle, shear, height, width)
    return F.affine_grid(theta, [1, 1, size, size], align_corners=False)


def warp(images: torch.Tensor, masks: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warps uint8 [N, 3, h, w] frames and bool [N, K, H, W] masks with a [1, S, S, 2] grid.

    Returns float frames in 0..255 (bilinear) and bool masks (nearest); outside the source is 0.
    """
    grid = grid.expand(images.shape[0], -1, -1, -1)
    out_images = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)
    out_masks = F.grid_sample(masks.float(), grid, mode="nearest", align_corners=False) > 0.5
    return out_images, out_masks


def color_jitter(images: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """Brightness, contrast and saturation factors applied to float [N, 3, S, S] frames."""
    images = (images * brightness).clamp(0, 255)
    mean = (images * _GRAY).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    images = ((images - mean) * contrast + mean).clamp(0, 255)
    gray = (images * _GRAY).sum(1, keepdim=True)
    return ((images - gray) * saturation + gray).clamp(0, 255)


@dataclass
class ClipAugment:
    """The augmentation of one clip: geometry and colour drawn once, jitter drawn per frame.

    Build it with `ClipAugment.draw`, then `apply` it to each frame.
    """

    grid: torch.Tensor  # [1, S, S, 2]
    clip_jitter: tuple[float, float, float]
    grayscale: bool
    frame_jitter: np.ndarray  # [T, 3]

    @classmethod
    def draw(
        cls, cfg: AugmentConfig, rng: np.random.Generator, num_frames: int, height: int, width: int, size: int
    ) -> ClipAugment:
        """Draws the parameters for a clip of `num_frames` frames of `height` x `width`."""
        flip = bool(rng.random() < cfg.hflip)
        angle = float(rng.uniform(-cfg.degrees, cfg.degrees))
        shear = float(rng.uniform(-cfg.shear, cfg.shear))
        strengths = (cfg.brightness, cfg.contrast, cfg.saturation)
        clip = tuple(float(rng.uniform(1 - s, 1 + s)) for s in strengths)
        grayscale = bool(rng.random() < cfg.grayscale)
        frame_strengths = np.array([cfg.frame_brightness, cfg.frame_contrast, cfg.frame_saturation])
        frame = rng.uniform(1 - frame_strengths, 1 + frame_strengths, (num_frames, 3))
        return cls(warp_grid(flip, angle, shear, height, width, size), clip, grayscale, frame)

    def apply(
        self, index: int, image: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame `index` of the clip: uint8 [3, h, w] and bool [K, H, W] in, uint8 [3, S, S] and
        bool [K, S, S] out."""
        out, out_masks = warp(image[None], masks[None], self.grid)
        out = color_jitter(out, *self.clip_jitter)
        if self.grayscale:
            out = (out * _GRAY).sum(1, keepdim=True).expand(-1, 3, -1, -1)
        out = color_jitter(out, *(float(f) for f in self.frame_jitter[index]))
        return out[0].round().to(torch.uint8), out_masks[0]
