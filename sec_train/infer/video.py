"""Videos for inference and evaluation: frames from files or JPEG bytes, label maps on demand.

A `Video` is what propagation reads, whatever it came from: a folder of frames with a
first-frame mask (`sec-train predict`), a DAVIS-style sequence, or a shard sample (`sec-train
eval`). Frames and annotations are decoded when asked for, so long videos are never held whole.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DAVIS_VOID_LABEL = 255


@dataclass
class Video:
    """One video: its frames in order and the label maps of its annotated frames.

    `annotations` maps a frame position to a loader of its uint8 `[H, W]` label map
    (0 = background, k = object k). Frame 0 must be annotated; each object is prompted on
    the first frame that annotates it (`prompts`). `scene_cuts`, when known (a shard header's
    `scene_cuts`), are where evaluation's post-cut scores start; otherwise the detector decides.
    """

    name: str
    frames: list[Path | bytes]
    annotations: dict[int, Callable[[], np.ndarray]] = field(default_factory=dict)
    scene_cuts: list[int] | None = None  # frame positions of known scene changes (synthetic GT)

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, t: int) -> np.ndarray:
        """Frame `t` as uint8 `[H, W, 3]` RGB."""
        source = self.frames[t]
        where = f"{self.name} frame {t}" if isinstance(source, bytes) else str(source)
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            return np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot decode {where}: {err}") from err

    def frame_name(self, t: int) -> str:
        """Frame `t`'s file stem, or its zero-padded position for frames held as bytes."""
        source = self.frames[t]
        return f"{t:05d}" if isinstance(source, bytes) else Path(source).stem

    def labels(self, t: int) -> np.ndarray:
        """The annotated label map of frame `t`."""
        if t not in self.annotations:
            raise KeyError(f"{self.name}: frame {t} is not annotated")
        return self.annotations[t]()

    def prompts(self) -> dict[int, np.ndarray]:
        """Each object's first annotation: frame position -> the label map of the objects first
        annotated there (0 elsewhere). DAVIS and `predict` prompt every object on frame 0."""
        if 0 not in self.annotations:
            raise ValueError(f"{self.name}: the first frame is not annotated")
        prompts, seen = {}, {0}
        for t in sorted(self.annotations):
            labels = self.labels(t)
            new = sorted(set(np.unique(labels).tolist()) - seen)
            if new:
                prompts[t] = np.where(np.isin(labels, new), labels, 0).astype(np.uint8)
                seen.update(new)
        if not prompts:
            raise ValueError(f"{self.name}: no annotated frame holds an object")
        return prompts

    def object_ids(self) -> list[int]:
        """Every object annotated somewhere in the video, in id order."""
        return sorted({int(i) for labels in self.prompts().values() for i in np.unique(labels) if i != 0})


def list_frames(directory: str | Path) -> list[Path]:
    """The image files of a frame folder in name order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"frame folder {directory} does not exist")
    frames = sorted(p for p in directory.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise ValueError(f"frame folder {directory} has no {'/'.join(FRAME_SUFFIXES)} files")
    return frames


def read_id_png(path: str | Path) -> np.ndarray:
    """A palette ('P') or greyscale ('L') PNG of object ids as uint8 `[H, W]`, values as stored."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"mask {path} does not exist")
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "1"):
            raise ValueError(
                f"mask {path} is a {image.mode} image; expected a palette or greyscale PNG of ids"
            )
        return np.array(image, dtype=np.uint8)


def read_labels(path: str | Path) -> np.ndarray:
    """A DAVIS-style label PNG as uint8 `[H, W]` object ids.

    DAVIS's void label 255 (unlabelled borders) reads as background, as its evaluation does.
    """
    labels = read_id_png(path)
    labels[labels == DAVIS_VOID_LABEL] = 0
    return labels
