"""Your own videos, in one of three layouts:

- `palette`: `ROOT/JPEGImages/<video>/<frame>.{jpg,png}` and `ROOT/Annotations/<video>/<frame>.png`,
  a palette or grey PNG whose pixel value is the object id (0 = background);
- `binary`: the same frames and `ROOT/Annotations/<video>/<object id>/<frame>.png`, one binary
  PNG (non-zero = object) per object and frame; a missing file means the object is absent;
- `coco`: a YouTube-VIS style JSON, {"videos": [{"id", "file_names", "height", "width"}],
  "annotations": [{"video_id", "id", "segmentations": [one per frame: RLE, polygons or null]}]},
  with `file_names` relative to an images directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from data_tools.convert_palette import IMAGE_SUFFIXES, PaletteJob, frame_number, read_frame_jpeg
from sec_train.data.format import make_sample, mask_to_rle
from sec_train.types import VideoSample


def custom_palette_jobs(root: str | Path) -> list[PaletteJob]:
    """The videos of a `palette` layout."""
    root = Path(root)
    names = sorted(p.name for p in (root / "Annotations").iterdir() if p.is_dir())
    return [PaletteJob("custom", n, root / "JPEGImages" / n, root / "Annotations" / n) for n in names]


@dataclass(frozen=True)
class BinaryJob:
    """One video of the `binary` layout."""

    video: str
    image_dir: Path
    mask_dir: Path
    source: str = "custom"

    def __str__(self) -> str:
        return f"{self.source}:{self.video}"


def binary_jobs(root: str | Path) -> list[BinaryJob]:
    """The videos of a `binary` layout."""
    root = Path(root)
    names = sorted(p.name for p in (root / "Annotations").iterdir() if p.is_dir())
    return [BinaryJob(n, root / "JPEGImages" / n, root / "Annotations" / n) for n in names]


def load_binary_video(job: BinaryJob) -> VideoSample:
    """Reads a video with one binary PNG per object and frame."""
    object_dirs = sorted(
        (p for p in job.mask_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not object_dirs:
        raise ValueError(f"{job.mask_dir}: no <object id>/ folders")
    stems = sorted({m.stem for d in object_dirs for m in d.glob("*.png")})
    images = {p.stem: p for p in job.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [s for s in stems if s not in images]
    if missing:
        raise ValueError(f"{job.mask_dir}: masks without a frame in {job.image_dir}: {missing[:5]}")
    frames, masks = [], []
    for stem in stems:
        jpeg, (width, height) = read_frame_jpeg(images[stem])
        frames.append(jpeg)
        row = []
        for d in object_dirs:
            path = d / f"{stem}.png"
            mask = np.asarray(Image.open(path).convert("L")) > 0 if path.is_file() else None
            if mask is not None and mask.shape != (height, width):
                raise ValueError(f"{path}: mask is {mask.shape}, frame is {(height, width)}")
            row.append(None if mask is None else mask_to_rle(mask))
        masks.append(row)
    return make_sample(
        f"{job.source}_{job.video}",
        source=job.source,
        video=job.video,
        height=height,
        width=width,
        fps=24.0,
        frame_indices=[frame_number(images[s], i) for i, s in enumerate(stems)],
        object_ids=[int(d.name) for d in object_dirs],
        frames=frames,
        masks=masks,
    )


@dataclass
class CocoJob:
    """One video of a YouTube-VIS style JSON, with its objects' per-frame segmentations."""

    video: dict
    tracks: list[dict]
    images: Path

    def __str__(self) -> str:
        return f"coco:{self.video.get('id')}"


def coco_jobs(annotations: str | Path, images: str | Path) -> list[CocoJob]:
    """The videos of a COCO-style video JSON."""
    data = json.loads(Path(annotations).read_text())
    tracks: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        tracks.setdefault(ann["video_id"], []).append(ann)
    return [CocoJob(v, tracks.get(v["id"], []), Path(images)) for v in data["videos"]]


def segmentation_rle(segmentation, height: int, width: int) -> dict | None:
    """A COCO segmentation (polygons, uncompressed or compressed RLE, or None) as compressed RLE."""
    if not segmentation:
        return None
    if isinstance(segmentation, list):  # polygons
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        return segmentation
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def load_coco_video(job: CocoJob) -> VideoSample:
    """Reads one video of a COCO-style video JSON."""
    video, height, width = job.video, job.video["height"], job.video["width"]
    names = video["file_names"]
    for track in job.tracks:
        if len(track["segmentations"]) != len(names):
            raise ValueError(f"video {video['id']} object {track['id']}: segmentations do not match frames")
    frames = [read_frame_jpeg(job.images / name)[0] for name in names]
    masks = [
        [segmentation_rle(t["segmentations"][i], height, width) for t in job.tracks]
        for i in range(len(names))
    ]
    name = str(video.get("name", video["id"]))
    return make_sample(
        f"custom_{name}",
        source="custom",
        video=name,
        height=height,
        width=width,
        fps=float(video.get("fps", 24.0)),
        frame_indices=[frame_number(Path(n), i) for i, n in enumerate(names)],
        object_ids=[int(t["id"]) for t in job.tracks],
        frames=frames,
        masks=masks,
    )
