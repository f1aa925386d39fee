"""SA-V: `<video>.mp4` at 24 fps and `<video>_manual.json`, whose `masklet[i][j]` is the COCO RLE
of object j on annotated frame i (every 4th video frame).

Only the annotated frames are decoded, one at a time (`data_tools.video.read_frames`), and
re-encoded as JPEG; the RLEs are stored as they are. `sav_release_jobs` takes the release tree
as downloaded: `sav_train/` (its `sav_000 ... sav_055` folders, each with the mp4 and json
files side by side, or one of those folders), or `sav_val/` / `sav_test/`, whose frames are
JPEGs in `JPEGImages_24fps/<video>/` and whose annotations are per-object PNGs in
`Annotations_6fps/<video>/<obj_id:03d>/<frame>.png` (read by `convert_custom`'s binary layout).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from data_tools.convert_custom import BinaryJob
from data_tools.synth import encode_jpeg
from data_tools.video import read_frames
from sec_train.data.format import make_sample
from sec_train.types import VideoSample

ANNOTATION_STRIDE = 4


@dataclass(frozen=True)
class SavJob:
    """One SA-V video: its mp4 and its manual annotation file."""

    video: str
    mp4: Path
    manual: Path
    jpeg_quality: int = 90

    def __str__(self) -> str:
        return f"sav:{self.video}"


def sav_jobs(
    videos: str | Path, annotations: str | Path, obj_list: str | Path | None = None, jpeg_quality: int = 90
) -> list[SavJob]:
    """The videos with a `_manual.json` in `annotations` (those of `obj_list` when given)."""
    videos, annotations = Path(videos), Path(annotations)
    names = sorted(p.name[: -len("_manual.json")] for p in annotations.glob("*_manual.json"))
    if obj_list is not None:
        listed = {line.split()[0] for line in Path(obj_list).read_text().splitlines() if line.strip()}
        names = [n for n in names if n in listed]
    if not names:
        raise FileNotFoundError(f"no *_manual.json to convert in {annotations}")
    return [SavJob(n, videos / f"{n}.mp4", annotations / f"{n}_manual.json", jpeg_quality) for n in names]


def sav_release_jobs(
    root: str | Path, obj_list: str | Path | None = None, jpeg_quality: int = 90
) -> list[SavJob] | list[BinaryJob]:
    """The videos of an SA-V release folder: `SavJob`s for training folders of mp4 + json,
    `BinaryJob`s for `sav_val` / `sav_test` (frames and per-object PNGs, 6 fps annotated)."""
    root = Path(root)
    if (root / "Annotations_6fps").is_dir():
        images, masks = root / "JPEGImages_24fps", root / "Annotations_6fps"
        if not images.is_dir():
            raise FileNotFoundError(f"{root}: Annotations_6fps/ without JPEGImages_24fps/")
        names = sorted(p.name for p in masks.iterdir() if p.is_dir())
        return [BinaryJob(n, images / n, masks / n, source="sav") for n in names]
    if any(root.glob("*_manual.json")):
        folders = [root]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*_manual.json")))
    if not folders:
        raise FileNotFoundError(
            f"{root} is not an SA-V release folder: no *_manual.json in it or its sav_NNN/ folders, "
            "and no Annotations_6fps/"
        )
    return [job for folder in folders for job in sav_jobs(folder, folder, obj_list, jpeg_quality)]


def load_sav_video(job: SavJob) -> VideoSample:
    """Decodes the annotated frames of one SA-V video into a `VideoSample`."""
    manual = json.loads(job.manual.read_text())
    masklet = manual["masklet"]
    if not masklet or not masklet[0]:
        raise ValueError(f"{job.manual}: empty masklet")
    height, width = masklet[0][0]["size"]
    indices = [i * ANNOTATION_STRIDE for i in range(len(masklet))]
    frames = []
    for index, frame in read_frames(job.mp4, indices):
        if frame.shape[:2] != (height, width):
            raise ValueError(f"{job.mp4}: frame {index} is {frame.shape[:2]}, masks are {(height, width)}")
        frames.append(encode_jpeg(frame, job.jpeg_quality))
    object_ids = [int(o) for o in manual.get("masklet_id", range(len(masklet[0])))]
    return make_sample(
        job.video,
        source="sav",
        video=job.video,
        height=height,
        width=width,
        fps=24.0,
        frame_indices=indices,
        object_ids=object_ids,
        frames=frames,
        masks=masklet,
    )
