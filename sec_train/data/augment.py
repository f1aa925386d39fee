"""Stage-1 clip augmentations (SAM 2's training transforms), with torch only.

Per clip: horizontal flip, affine (rotation and x-shear about the centre), resize to a square,
colour jitter and grayscale, all drawn once and applied to every frame and mask; then a second
colour jitter drawn per frame. Flip, affine and resize are one `grid_sample` per clip from the
original frames straight to the output size.
"""

from __future__ import annotations

import math

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


def warp_clip(
    images: torch.Tensor, masks: torch.Tensor, size: int, flip: bool, angle: float, shear: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warps uint8 [T, 3, h, w] frames and bool [T, K, H, W] masks to [T, ., size, size].

    Frames may be decoded at a reduced scale (h, w) of the masks' (H, W): the grid is in
    normalized coordinates, so one grid serves both. Returns float frames in 0..255
    (bilinear) and bool masks (nearest); outside the source is 0.
    """
    t, _, h, w = masks.shape
    theta = warp_theta(flip, angle, shear, h, w).expand(t, 2, 3)
    grid = F.affine_grid(theta, [t, 1, size, size], align_corners=False)
    out_images = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)
    out_masks = F.grid_sample(masks.float(), grid, mode="nearest", align_corners=False) > 0.5
    return out_images, out_masks


def color_jitter(
    images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor
) -> torch.Tensor:
    """Brightness, contrast, saturation factors [T] applied to float [T, 3, S, S] frames."""
    images = (images * brightness.view(-1, 1, 1, 1)).clamp(0, 255)
    mean = (images * _GRAY).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    images = ((images - mean) * contrast.view(-1, 1, 1, 1) + mean).clamp(0, 255)
    gray = (images * _GRAY).sum(1, keepdim=True)
    return ((images - gray) * saturation.view(-1, 1, 1, 1) + gray).clamp(0, 255)


def _factors(rng: np.random.Generator, strength: float, n: int) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(1 - strength, 1 + strength, n)).float()


def augment_clip(
    images: torch.Tensor, masks: torch.Tensor, size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augments a clip consistently: uint8 [T, 3, H, W] frames and bool [T, K, H, W] masks in,
    uint8 [T, 3, size, size] frames and bool [T, K, size, size] masks out."""
    t = images.shape[0]
    flip = bool(rng.random() < cfg.hflip)
    angle = float(rng.uniform(-cfg.degrees, cfg.degrees))
    shear = float(rng.uniform(-cfg.shear, cfg.shear))
    out, out_masks = warp_clip(images, masks, size, flip, angle, shear)
    clip = [_factors(rng, s, 1).expand(t) for s in (cfg.brightness, cfg.contrast, cfg.saturation)]
    out = color_jitter(out, *clip)
    if rng.random() < cfg.grayscale:
        out = (out * _GRAY).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    per_frame = [
        _factors(rng, s, t) for s in (cfg.frame_brightness, cfg.frame_contrast, cfg.frame_saturation)
    ]
    out = color_jitter(out, *per_frame)
    return out.round().to(torch.uint8), out_masks
