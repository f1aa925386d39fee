"""Videos for inference and evaluation: frames from files or JPEG bytes, label maps on demand.

A `Video` is what propagation reads, whatever it came from: a folder of frames with a
first-frame mask (`sec-train predict`), a sequence of a dataset folder in either annotation
layout (`davis_video`: palette PNGs, `per_object_video`: SA-V's `<obj>/<frame>.png`), or a
shard sample (`sec-train eval`). Frames and annotations are decoded when asked for, so long
videos are never held whole.
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
    (0 = background, k = object k). Each object is prompted on the first frame that annotates
    it (`prompts`), so objects that appear later (YouTube-VOS, LVOS) join there.
    `object_names` maps a label to the name the dataset gives the object (SA-V's per-object
    folders `000`, `001`, ...); empty for palette datasets, whose labels are the names.
    `scene_cuts`, when known (a shard header's `scene_cuts`), are where `evaluate_model`'s
    post-cut scores start; otherwise the detector decides.
    """

    name: str
    frames: list[Path | bytes]
    annotations: dict[int, Callable[[], np.ndarray]] = field(default_factory=dict)
    object_names: dict[int, str] = field(default_factory=dict)
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
        annotated there (0 elsewhere). DAVIS and `predict` prompt every object on frame 0;
        frames before the first prompt are tracked with no object."""
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


def davis_video(images_dir: Path, annotations_dir: Path) -> Video:
    """One DAVIS-style sequence; frames without an annotation PNG are tracked but not scored."""
    frames = list_frames(images_dir)
    position = {frame.stem: t for t, frame in enumerate(frames)}
    pngs = sorted(annotations_dir.glob("*.png")) if annotations_dir.is_dir() else []
    stray = [p.name for p in pngs if p.stem not in position]
    if stray:
        raise ValueError(f"{annotations_dir}: annotations {stray[:5]} have no frame in {images_dir}")
    annotations = {position[p.stem]: _png_loader(p) for p in pngs}
    if 0 not in annotations:
        raise ValueError(f"{annotations_dir}: the first frame {frames[0].name} has no annotation")
    return Video(images_dir.name, list(frames), annotations)


def _png_loader(path: Path):
    return lambda: read_labels(path)


def per_object_video(images_dir: Path, annotations_dir: Path) -> Video:
    """One SA-V-style sequence: `<obj>/<frame>.png` binary masks, object folder k -> label k + 1.

    Where masks overlap, the lower label wins (as one label map must hold them)."""
    frames = list_frames(images_dir)
    position = {frame.stem: t for t, frame in enumerate(frames)}
    objects = sorted(p for p in annotations_dir.iterdir() if p.is_dir()) if annotations_dir.is_dir() else []
    if not objects:
        raise ValueError(f"{annotations_dir}: no per-object annotation folders")
    if len(objects) > 255:
        raise ValueError(f"{annotations_dir}: {len(objects)} objects do not fit uint8 labels")
    masks: dict[int, dict[int, Path]] = {}  # frame position -> label -> mask file
    for label, folder in enumerate(objects, start=1):
        for png in sorted(folder.glob("*.png")):
            if png.stem not in position:
                raise ValueError(f"{png}: no frame {png.stem} in {images_dir}")
            masks.setdefault(position[png.stem], {})[label] = png
    annotations = {t: _per_object_loader(files) for t, files in masks.items()}
    names = {label: folder.name for label, folder in enumerate(objects, start=1)}
    return Video(images_dir.name, list(frames), annotations, names)


def read_binary_mask(path: Path) -> np.ndarray:
    """A per-object PNG as a bool mask: any non-zero pixel is the object."""
    return read_id_png(path) > 0


def _per_object_loader(files: dict[int, Path]):
    def labels() -> np.ndarray:
        out = None
        for label in sorted(files, reverse=True):
            mask = read_binary_mask(files[label])
            out = np.zeros(mask.shape, dtype=np.uint8) if out is None else out
            out[mask] = label
        return out

    return labels
