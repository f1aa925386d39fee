"""Decoding a sample's frames and masks and resizing them to the model's square inputs.

Both InternVL (one 448 px tile) and SAM 2 (1024 px) take square images resized without
keeping the aspect ratio, so frames and masks are resized straight to `size` x `size`.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sec_train.data.format import rle_to_mask
from sec_train.types import VideoSample


def decode_jpeg(data: bytes, size: int | None = None, expect: tuple[int, int] | None = None) -> Image.Image:
    """Decodes a JPEG to RGB; with `size`, lets libjpeg decode at a reduced scale that still
    covers `size` x `size` (much faster for large frames that are downscaled anyway).
    `expect` is the (width, height) the frame must have."""
    image = Image.open(io.BytesIO(data))
    if expect is not None and image.size != tuple(expect):
        raise ValueError(f"frame is {image.size[0]}x{image.size[1]}, expected {expect[0]}x{expect[1]}")
    if size is not None:
        image.draft("RGB", (size, size))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_chw(image: Image.Image | np.ndarray, size: int) -> torch.Tensor:
    """uint8 [3, size, size], bilinear with antialiasing (like PIL's, within 1 level), via
    torch's uint8 kernel, which is 2-3x faster than PIL's on large frames."""
    hwc = torch.from_numpy(np.array(image))  # a writable copy: torch warns on read-only arrays
    chw = hwc.permute(2, 0, 1)
    if chw.shape[1:] == (size, size):
        return chw
    return F.interpolate(chw[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[
        0
    ]


def resize_image(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """uint8 [size, size, 3] (a view of `resize_chw`'s result)."""
    return resize_chw(image, size).permute(1, 2, 0).numpy()


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """bool [size, size], nearest neighbour (PIL's convention: the source pixel under each
    output pixel's centre)."""
    h, w = mask.shape
    if (h, w) == (size, size):
        return mask
    rows = ((np.arange(size) + 0.5) * (h / size)).astype(np.intp)
    cols = ((np.arange(size) + 0.5) * (w / size)).astype(np.intp)
    return mask[rows][:, cols].astype(bool)


def frame_chw(sample: VideoSample, pos: int, size: int) -> torch.Tensor:
    """Annotated frame `pos` as uint8 [3, size, size]."""
    return resize_chw(sample_frame(sample, pos, size), size)


def sample_frame(sample: VideoSample, pos: int, size: int | None = None) -> Image.Image:
    """Annotated frame `pos` decoded (at a reduced scale still covering `size`, if given)."""
    return decode_jpeg(sample.frames[pos], size, (sample.header["width"], sample.header["height"]))


def object_mask(sample: VideoSample, pos: int, obj: int) -> np.ndarray:
    """bool [H, W] mask of object id `obj` on annotated frame `pos` (all False where absent)."""
    h, w = sample.header["height"], sample.header["width"]
    rle = sample.masks[pos][sample.header["object_ids"].index(obj)]
    return np.zeros((h, w), bool) if rle is None else rle_to_mask(rle, h, w)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] numpy -> uint8 [3, H, W] tensor view (stacking makes it contiguous)."""
    return torch.from_numpy(image).permute(2, 0, 1)
