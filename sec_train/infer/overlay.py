"""Writing predictions: palette PNGs in a dataset's own layout, and overlay PNGs.

`write_prediction` gives a palette video `OUT/<video>/<frame>.png` (pixel = object id, as DAVIS
stores them) and a per-object video (SA-V, SeCVOS: `Video.object_names` set)
`OUT/<video>/<obj_id:03d>/<frame>.png`, a 0/1 mask per object under the dataset's own object
folder names, as SeC's `vos_inference.py --per_obj_png_file` writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sec_train.data.draw import contour_mask
from sec_train.infer.video import Video


def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS / PASCAL VOC annotations as uint8 `[256, 3]`.

    Label bits are spread over the colour channels' high bits (bit 0 -> red, 1 -> green,
    2 -> blue, then the next bits one position lower), so small ids get distinct colours.
    """
    labels = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (labels >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


PALETTE = davis_palette()


def save_palette_png(labels: np.ndarray, path: str | Path) -> None:
    """Writes uint8 `[H, W]` object ids as a palette PNG, readable as ids by any DAVIS tool."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels for {path} must be uint8 [H, W], got {labels.dtype} {labels.shape}")
    image = Image.fromarray(labels, mode="P")
    image.putpalette(PALETTE.ravel().tolist())
    image.save(path)


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The frame with each object tinted in its palette colour and outlined."""
    if frame.shape[:2] != labels.shape:
        raise ValueError(f"frame is {frame.shape[:2]} but labels are {labels.shape}")
    colours = PALETTE[labels].astype(np.float32)
    tinted = np.where(labels[..., None] > 0, (1 - alpha) * frame + alpha * colours, frame)
    out = tinted.round().astype(np.uint8)
    for obj in np.unique(labels[labels > 0]):
        out[contour_mask(labels == obj)] = PALETTE[obj]
    return out


def save_overlay_png(frame: np.ndarray, labels: np.ndarray, path: str | Path, alpha: float = 0.5) -> None:
    """Writes `overlay(frame, labels)` as an RGB PNG."""
    Image.fromarray(overlay(frame, labels, alpha)).save(path)


def write_prediction(out: Path, video: Video, t: int, labels: np.ndarray) -> None:
    """Writes frame `t`'s predicted label map of `video` under `out` in the video's layout."""
    frame = f"{video.frame_name(t)}.png"
    if not video.object_names:
        (out / video.name).mkdir(parents=True, exist_ok=True)
        save_palette_png(labels, out / video.name / frame)
        return
    for label, name in video.object_names.items():
        (out / video.name / name).mkdir(parents=True, exist_ok=True)
        save_palette_png((labels == label).astype(np.uint8), out / video.name / name / frame)
