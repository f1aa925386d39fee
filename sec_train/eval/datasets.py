"""Evaluation videos from dataset folders or from shards, as `Video`s.

Dataset folders hold frames in `ROOT/JPEGImages/<video>/*.jpg` (SA-V: `JPEGImages_24fps`) and
annotations in `ROOT/Annotations/<video>/` (SA-V: `Annotations_6fps`; a `480p/` level under
both, as DAVIS ships them, is found too), in one of two layouts:

- `palette` (DAVIS, MOSE, YouTube-VOS, LVOS): `<video>/<frame>.png`, pixel = object id;
- `per-object` (SA-V val/test, SeCVOS): `<video>/<obj_id:03d>/<frame>.png`, one binary mask per
  object, read as label `k + 1` for the k-th object folder (`Video.object_names` keeps the name).

The layout is detected from the first video's annotation folder (sub-folders: per-object) or
named. An annotation belongs to the frame with the same file stem; frames without one are
tracked but not scored, and each object is prompted on its first annotated frame. A subset is
chosen by `ImageSets/2017/<subset>.txt`, or by giving a list file (that one, SA-V's
`sav_val.txt`, SeCVOS's `video_id.txt`) as the data. Shards (`index.json` + tars, see
`sec_train.data.format`): every stored frame is annotated; object `object_ids[j]` gets label `j + 1`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sec_train.data.format import INDEX_NAME, decode_record, iter_records, read_index
from sec_train.data.images import object_mask
from sec_train.infer.video import Video, davis_video, per_object_video
from sec_train.types import VideoSample

PALETTE, PER_OBJECT = "palette", "per-object"
LAYOUTS = (PALETTE, PER_OBJECT)
_IMAGE_DIRS = ("JPEGImages_24fps", "JPEGImages")
_ANNOTATION_DIRS = ("Annotations_6fps", "Annotations")
_RESOLUTION_DIR = "480p"


def annotation_dir(root: Path) -> Path | None:
    """The annotation folder of a dataset root (its `480p/` level if any), or None."""
    for name in _ANNOTATION_DIRS:
        if (root / name).is_dir():
            found = root / name
            return found / _RESOLUTION_DIR if (found / _RESOLUTION_DIR).is_dir() else found
    return None


def dataset_dirs(root: Path) -> tuple[Path, Path] | None:
    """The (frames, annotations) folders of a dataset root, or None if it is not one."""
    annotations = annotation_dir(root)
    images = next((root / name for name in _IMAGE_DIRS if (root / name).is_dir()), None)
    if annotations is None or images is None:
        return None
    if annotations.name == _RESOLUTION_DIR and (images / _RESOLUTION_DIR).is_dir():
        images = images / _RESOLUTION_DIR
    return images, annotations


def is_dataset_root(root: Path) -> bool:
    return dataset_dirs(root) is not None


def detect_layout(annotations: Path) -> str:
    """`per-object` if the first video's annotation folder holds folders, else `palette`."""
    videos = sorted(p for p in annotations.iterdir() if p.is_dir())
    if not videos:
        raise ValueError(f"{annotations} holds no video folders")
    return PER_OBJECT if any(p.is_dir() for p in videos[0].iterdir()) else PALETTE


def read_listing(path: Path) -> list[str]:
    """The video names of a DAVIS `ImageSets/<year>/<subset>.txt`, one a line."""
    if not path.is_file():
        raise FileNotFoundError(f"video list {path} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def folder_video_names(root: str | Path) -> list[str]:
    """The sequence names of a dataset root (its frame folders), sorted."""
    images, _ = _dirs(Path(root))
    names = sorted(p.name for p in images.iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{images} holds no video folders")
    return names


def folder_videos(
    root: str | Path, names: list[str] | None = None, layout: str | None = None
) -> Iterator[Video]:
    """The sequences of a dataset root, all or those named, read in `layout` (None: detected)."""
    images, annotations = _dirs(Path(root))
    layout = layout or detect_layout(annotations)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: one of {LAYOUTS}")
    read = per_object_video if layout == PER_OBJECT else davis_video
    for name in folder_video_names(root) if names is None else names:
        yield read(images / name, annotations / name)


def davis_videos(root: str | Path, names: list[str] | None = None) -> list[Video]:
    """The sequences of a DAVIS-style (palette) root: all of them, or those named."""
    return list(folder_videos(root, names, PALETTE))


def _dirs(root: Path) -> tuple[Path, Path]:
    dirs = dataset_dirs(root)
    if dirs is None:
        raise FileNotFoundError(f"{root} has no JPEGImages[_24fps]/ and Annotations[_6fps]/ folders")
    return dirs


def list_root(path: Path) -> Path | None:
    """The dataset root a video list file belongs to: DAVIS's `ROOT/ImageSets/2017/x.txt`, or a
    list beside the data (SA-V's `sav_val/sav_val.txt`, SeCVOS's `video_id.txt`)."""
    for root in (path.parent, *path.parents[2:3]):
        if is_dataset_root(root):
            return root
    return None


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
    scene_cuts = None if cuts is None else [int(c) for c in cuts]
    return Video(sample.key, list(sample.frames), annotations, scene_cuts=scene_cuts)


def shard_videos(shard_dir: str | Path) -> Iterator[Video]:
    """The videos of a shard directory, in index order, read one at a time."""
    for info in read_index(shard_dir)["shards"]:
        path = Path(shard_dir) / info["name"]
        for record in iter_records(path):
            yield sample_video(decode_record(record, str(path)))


def folder_source(data: str | Path, subset: str | None = None) -> tuple[Path, list[str] | None] | None:
    """(dataset root, the video names to use or None for all) of `data`, or None for shards."""
    path = Path(data)
    root = list_root(path) if path.suffix == ".txt" else None
    if root is not None:
        if subset is not None:
            raise ValueError(f"{path} already names the videos; --subset applies to a dataset root")
        return root, read_listing(path)
    if is_dataset_root(path):
        names = None if subset is None else read_listing(path / "ImageSets" / "2017" / f"{subset}.txt")
        return path, names
    if (path / INDEX_NAME).is_file():
        if subset is not None:
            raise ValueError(f"{path} is a shard directory; --subset applies to dataset folders")
        return None
    raise FileNotFoundError(
        f"{path} is neither a dataset root (JPEGImages[_24fps]/, Annotations[_6fps]/), a video list "
        "(ROOT/ImageSets/2017/<subset>.txt, ROOT/<name>.txt) nor a shard directory"
    )


def open_videos(data: str | Path, subset: str | None = None, layout: str | None = None) -> Iterator[Video]:
    """The videos of `data`: a dataset root (with `subset`, those of its
    `ImageSets/2017/<subset>.txt`), a video list file (what a recipe's `data.val` can name),
    or a shard directory. `layout` names the annotation layout of folders (None: detected)."""
    source = folder_source(data, subset)
    if source is None:
        yield from shard_videos(data)
    else:
        yield from folder_videos(*source, layout)
