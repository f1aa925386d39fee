"""Which frames and objects a benchmark scores: the DAVIS 2017 and the SA-V / SeCVOS protocols.

Both score an object frame by frame with J (`db_eval_iou`) and F (`f_measure`), average its
frames, and average the objects of all videos. They differ in what they score:

- **DAVIS 2017 semi-supervised** (davis2017-evaluation, `evaluation.py`): the objects are
  labels 1..max of the first annotation (255 = void reads as background); every annotated
  frame but the first and the last is scored for every object, also where it is absent
  (empty vs empty scores 1); a predicted label above the objects is an error.
- **SA-V** (`sav_evaluator.py` of SAM 2 and SeC): per-object folders are scored one object
  at a time on that object's own annotated frames (palette folders: all objects on the
  video's); the first and last of them are skipped unless told not to; an object is scored
  from the first of those frames where it is in the ground truth or the prediction on, and
  only objects present in the ground truth are reported.
- **SeCVOS segments** (`--scene_info`): per video, `scene_info[video][segment] = [start, end]`
  frame numbers keep the frames `start..end` (the object's first annotated frame always
  kept), first and last frames not skipped; a video without a span for `first_segment` is
  scored whole, one without a span for a later segment is left out of it.

Recall and decay (DAVIS's `db_statistics`) are computed on the same per-frame values in both;
SA-V's evaluator reports only the means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sec_train.eval.metrics import ObjectScore, db_eval_iou, db_statistics, f_measure

DAVIS, SAV = "davis", "sav"
PROTOCOLS = (DAVIS, SAV)
SEGMENTS = ("first_segment", "second_segment", "remain_segments")

# frame name -> uint8 [H, W] label map
ReadLabels = Callable[[str], np.ndarray]


@dataclass
class ObjectTrack:
    """One object's J and F on each frame a protocol scores."""

    name: str
    frames: list[str]
    j: list[float]
    f: list[float]

    def score(self) -> ObjectScore:
        (jm, jr, jd), (fm, fr, fd) = db_statistics(np.array(self.j)), db_statistics(np.array(self.f))
        return ObjectScore(j=jm, f=fm, j_recall=jr, f_recall=fr, j_decay=jd, f_decay=fd)


def _check_shapes(gt: np.ndarray, pred: np.ndarray, where: str) -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"{where}: prediction {pred.shape} and ground truth {gt.shape} differ in shape")


def davis_tracks(
    video: str, frames: list[str], read_gt: ReadLabels, read_pred: ReadLabels
) -> list[ObjectTrack]:
    """The DAVIS 2017 semi-supervised protocol on one video.

    Args:
        video (`str`): the video's name, for errors.
        frames (`list[str]`): its annotated frames in order.
        read_gt (`ReadLabels`): ground-truth labels of a frame, void already background.
        read_pred (`ReadLabels`): predicted labels of a frame.
    """
    if len(frames) < 3:
        raise ValueError(
            f"{video}: the DAVIS protocol needs 3 annotated frames, found {len(frames)} (ground truth "
            "withheld for a server? --predict-only)"
        )
    num_objects = int(read_gt(frames[0]).max())
    scored = frames[1:-1]
    tracks = [ObjectTrack(str(obj), list(scored), [], []) for obj in range(1, num_objects + 1)]
    for frame in scored:
        gt, pred = read_gt(frame), read_pred(frame)
        _check_shapes(gt, pred, f"{video} frame {frame}")
        if int(pred.max()) > num_objects:
            raise ValueError(
                f"{video} frame {frame}: predicted label {int(pred.max())}, but the first frame has "
                f"{num_objects} objects"
            )
        for obj, track in enumerate(tracks, start=1):
            track.j.append(float(db_eval_iou(gt == obj, pred == obj)))
            track.f.append(f_measure(pred == obj, gt == obj))
    return tracks


def sav_tracks(
    video: str,
    frames: list[str],
    read_gt: ReadLabels,
    read_pred: ReadLabels,
    names: dict[int, str] | None = None,
) -> list[ObjectTrack]:
    """The SA-V evaluator's rule on one video's (or one object's) scored frames.

    Every label seen so far in the ground truth or the prediction is scored on each frame from
    then on; the labels the ground truth holds somewhere are reported, named by `names`
    (default: the label). A per-object folder is one call with 0/1 labels.
    """
    started: dict[int, ObjectTrack] = {}
    in_gt: set[int] = set()
    for frame in frames:
        gt, pred = read_gt(frame), read_pred(frame)
        _check_shapes(gt, pred, f"{video} frame {frame}")
        gt_ids = set(np.unique(gt).tolist()) - {0}
        in_gt |= gt_ids
        for obj in sorted(gt_ids | set(np.unique(pred).tolist()) - {0}):
            started.setdefault(obj, ObjectTrack((names or {}).get(obj, str(obj)), [], [], []))
        for obj, track in started.items():
            track.frames.append(frame)
            track.j.append(float(db_eval_iou(gt == obj, pred == obj)))
            track.f.append(f_measure(pred == obj, gt == obj))
    return [started[obj] for obj in sorted(in_gt)]


def segment_frames(frames: list[str], span: list[int] | None, segment: str) -> list[str] | None:
    """The frames of one SeCVOS segment, or None when the video is left out of it.

    Frame files are kept when `f"{start:05d}.png" <= name < f"{end + 1:05d}.png"`, compared as
    strings as SeC's evaluator does; the first annotated frame (the prompt) is always kept.
    """
    if not span:
        return list(frames) if segment == SEGMENTS[0] else None
    low, high = f"{int(span[0]):05d}.png", f"{int(span[1]) + 1:05d}.png"
    kept = [frame for frame in frames if low <= f"{frame}.png" < high]
    return kept if frames[0] in kept else [frames[0], *kept]
