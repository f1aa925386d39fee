"""DAVIS 2017, YouTube-VOS and MOSE: frame folders with palette-PNG annotations.

Layouts (a pixel value of an annotation is its object id, 0 = background):

- davis: `ROOT/JPEGImages[/480p]/<video>/*.jpg`, `ROOT/Annotations[/480p]/<video>/*.png`, the
  videos of `ROOT/ImageSets/2017/<split>.txt` (all videos when the file is missing);
- ytvos, mose: `ROOT/<split>/JPEGImages/<video>/*.jpg`, `ROOT/<split>/Annotations/<video>/*.png`;
  YouTube-VOS's `ROOT/<split>/meta.json` lists each video's objects.

The annotated frames are those with both an image and an annotation. JPEG frames are stored as
they are (no re-encoding); other image formats are encoded to JPEG.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data_tools.synth import encode_jpeg
from sec_train.data.format import make_sample, mask_to_rle
from sec_train.types import VideoSample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class PaletteJob:
    """One video: its frame and annotation folders, and its object ids when a meta file lists them."""

    source: str
    video: str
    image_dir: Path
    mask_dir: Path
    object_ids: tuple[int, ...] | None = None
    fps: float = 24.0

    def __str__(self) -> str:
        return f"{self.source}:{self.video}"


def _first_existing(*paths: Path) -> Path:
    for path in paths:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"none of {[str(p) for p in paths]} exists")


def palette_jobs(dataset: str, root: str | Path, split: str) -> list[PaletteJob]:
    """The videos of a DAVIS / YouTube-VOS / MOSE split, sorted by name."""
    root = Path(root)
    if dataset == "davis":
        images = _first_existing(root / "JPEGImages" / "480p", root / "JPEGImages")
        masks = _first_existing(root / "Annotations" / "480p", root / "Annotations")
        split_file = root / "ImageSets" / "2017" / f"{split}.txt"
        names = split_file.read_text().split() if split_file.is_file() else None
    elif dataset in ("ytvos", "mose"):
        images, masks, names = root / split / "JPEGImages", root / split / "Annotations", None
    else:
        raise ValueError(f"unknown palette dataset {dataset!r}: davis, ytvos or mose")
    if names is None:
        names = sorted(p.name for p in _first_existing(masks).iterdir() if p.is_dir())
    meta = _ytvos_objects(root / split / "meta.json") if dataset == "ytvos" else {}
    fps = 30.0 if dataset == "ytvos" else 24.0  # YouTube-VOS frame names count 30 fps frames
    return [PaletteJob(dataset, n, images / n, masks / n, meta.get(n), fps) for n in sorted(names)]


def _ytvos_objects(path: Path) -> dict[str, tuple[int, ...]]:
    if not path.is_file():
        return {}
    videos = json.loads(path.read_text())["videos"]
    return {name: tuple(sorted(int(o) for o in v["objects"])) for name, v in videos.items()}


def frame_number(path: Path, position: int) -> int:
    """The frame index a file name encodes (`00042.jpg` -> 42), else its position."""
    digits = "".join(c for c in path.stem if c.isdigit())
    return int(digits) if digits else position


def annotated_frames(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """(image, annotation) pairs of the frames that have both, in name order."""
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [(images[m.stem], m) for m in sorted(mask_dir.glob("*.png")) if m.stem in images]
    if not pairs:
        raise ValueError(f"{mask_dir}: no annotation has a matching frame in {image_dir}")
    return pairs


def read_frame_jpeg(path: Path) -> tuple[bytes, tuple[int, int]]:
    """(JPEG bytes, (width, height)); JPEGs are kept byte for byte."""
    with Image.open(path) as image:
        size = image.size
        if image.format == "JPEG":
            return path.read_bytes(), size
        return encode_jpeg(np.asarray(image.convert("RGB"))), size


def load_palette_video(job: PaletteJob) -> VideoSample:
    """Reads one video's annotated frames and palette masks into a `VideoSample`."""
    pairs = annotated_frames(job.image_dir, job.mask_dir)
    frames, labels, size = [], [], None
    for image_path, mask_path in pairs:
        jpeg, frame_size = read_frame_jpeg(image_path)
        label = np.asarray(Image.open(mask_path))
        if label.ndim != 2:
            raise ValueError(f"{mask_path}: expected a palette or grey PNG, got shape {label.shape}")
        if (size is not None and frame_size != size) or label.shape != frame_size[::-1]:
            raise ValueError(f"{mask_path}: size {label.shape[::-1]} / frame {frame_size}, video is {size}")
        size = frame_size
        frames.append(jpeg)
        labels.append(label)
    ids = job.object_ids or tuple(int(v) for v in np.unique(np.stack(labels)) if v != 0)
    return make_sample(
        f"{job.source}_{job.video}",
        source=job.source,
        video=job.video,
        height=size[1],
        width=size[0],
        fps=job.fps,
        frame_indices=[frame_number(p, i) for i, (p, _) in enumerate(pairs)],
        object_ids=list(ids),
        frames=frames,
        masks=[[mask_to_rle(label == obj) for obj in ids] for label in labels],
    )
