"""Evaluation videos from DAVIS-style folders or from shards, as `Video`s.

DAVIS-style: `ROOT/JPEGImages/<video>/*.jpg` and `ROOT/Annotations/<video>/*.png` palette
PNGs (a `480p/` level under both, as DAVIS ships them, is found too); an annotation belongs to
the frame with the same file stem, and the first frame must be annotated. A subset is chosen
by `ImageSets/2017/<subset>.txt`, by name or by giving that file as the data. Shards
(`index.json` + tars, see `data_tools.format`): every stored frame is annotated; object
`object_ids[j]` gets label `j + 1`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data_tools.format import INDEX_NAME, decode_record, iter_records, read_index
from sec_train.data.images import object_mask
from sec_train.infer.video import Video, list_frames, read_labels
from sec_train.types import VideoSample

_RESOLUTION_DIR = "480p"


def is_davis_root(root: Path) -> bool:
    return (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir()


def _davis_dirs(root: Path) -> tuple[Path, Path]:
    images, annotations = root / "JPEGImages", root / "Annotations"
    if (images / _RESOLUTION_DIR).is_dir():
        images, annotations = images / _RESOLUTION_DIR, annotations / _RESOLUTION_DIR
    return images, annotations


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


def read_listing(path: Path) -> list[str]:
    """The video names of a DAVIS `ImageSets/<year>/<subset>.txt`, one a line."""
    if not path.is_file():
        raise FileNotFoundError(f"video list {path} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def davis_videos(root: str | Path, names: list[str] | None = None) -> list[Video]:
    """The sequences of a DAVIS-style root: all of them, or those named."""
    images, annotations = _davis_dirs(Path(root))
    if names is None:
        names = sorted(p.name for p in images.iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{images} holds no video folders")
    return [davis_video(images / name, annotations / name) for name in names]


def sample_video(sample: VideoSample) -> Video:
    """A shard sample as a `Video` whose every frame is annotated."""
    object_ids = sample.header["object_ids"]
    if len(object_ids) > 255:
        raise ValueError(
            f"shard {sample.shard} key {sample.key}: {len(object_ids)} objects do not fit uint8 labels"
        )

    def labels(t: int) -> np.ndarray:
        out = np.zeros((sample.header["height"], sample.header["width"]), dtype=np.uint8)
        for j, obj in enumerate(object_ids):
            out[object_mask(sample, t, obj)] = j + 1
        return out

    annotations = {t: (lambda t=t: labels(t)) for t in range(len(sample.frames))}
    cuts = sample.header.get("scene_cuts")
    return Video(sample.key, list(sample.frames), annotations, None if cuts is None else list(cuts))


def shard_videos(shard_dir: str | Path) -> Iterator[Video]:
    """The videos of a shard directory, in index order, read one at a time."""
    for info in read_index(shard_dir)["shards"]:
        path = Path(shard_dir) / info["name"]
        for record in iter_records(path):
            yield sample_video(decode_record(record, str(path)))


def open_videos(data: str | Path, subset: str | None = None) -> Iterator[Video]:
    """The videos of `data`: a DAVIS-style root (with `subset`, those of its
    `ImageSets/2017/<subset>.txt`), a DAVIS list file `ROOT/ImageSets/<year>/<subset>.txt`
    itself (what a recipe's `data.val` can name), or a shard directory."""
    path = Path(data)
    if path.suffix == ".txt" and len(path.parents) > 2 and is_davis_root(path.parents[2]):
        if subset is not None:
            raise ValueError(f"{path} already names the videos; --subset applies to a DAVIS root")
        yield from davis_videos(path.parents[2], read_listing(path))
    elif is_davis_root(path):
        names = None if subset is None else read_listing(path / "ImageSets" / "2017" / f"{subset}.txt")
        yield from davis_videos(path, names)
    elif (path / INDEX_NAME).is_file():
        if subset is not None:
            raise ValueError(f"{path} is a shard directory; --subset applies to DAVIS-style folders")
        yield from shard_videos(path)
    else:
        raise FileNotFoundError(
            f"{path} is neither a DAVIS-style root (JPEGImages/, Annotations/), a DAVIS video list "
            "(ROOT/ImageSets/2017/<subset>.txt) nor a shard directory"
        )
