"""J (region IoU) and F (boundary F-measure) exactly as the DAVIS 2017 evaluation computes them.

This follows `davis2017/metrics.py` of the davis2017-evaluation toolkit (`db_eval_iou`,
`db_eval_boundary`, `_seg2bmap`, boundary dilation by a disk of radius
`ceil(0.008 * image diagonal)`) and `davis2017/evaluation.py` (semi-supervised protocol: the
first and last annotated frames are not scored, one score per object = mean over its frames,
dataset score = mean over all objects of all videos). It is written with numpy alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

BOUNDARY_TOLERANCE = 0.008


def db_eval_iou(annotation: np.ndarray, segmentation: np.ndarray) -> np.ndarray:
    """Region similarity J over the last two axes of boolean masks.

    Args:
        annotation (`np.ndarray`): ground-truth masks `[..., H, W]`.
        segmentation (`np.ndarray`): predicted masks of the same shape.

    Returns:
        `np.ndarray`: IoU per leading index; 1 where both masks are empty, as DAVIS scores it.
    """
    if annotation.shape != segmentation.shape:
        raise ValueError(f"annotation {annotation.shape} and segmentation {segmentation.shape} differ")
    annotation = annotation.astype(bool)
    segmentation = segmentation.astype(bool)
    inter = np.sum(annotation & segmentation, axis=(-2, -1))
    union = np.sum(annotation | segmentation, axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask, offset half a pixel towards the origin.

    A pixel is on the boundary where it differs from its right, lower or lower-right
    neighbour (pixels past the border count as background), as in DAVIS's `_seg2bmap`.
    """
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def dilate_disk(bmap: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the disk `{(dy, dx): dy^2 + dx^2 <= radius^2}`, zero outside the image.

    The disk is split into one horizontal run per row offset; a run is a difference of two
    slices of a row-wise cumulative sum, so the cost does not grow with the disk's area.
    """
    h, w = bmap.shape
    # csum[:, j] = number of set pixels among the first j of the row padded by `radius` zeros
    csum = np.zeros((h, w + 2 * radius + 1), dtype=np.int32)
    np.cumsum(np.pad(bmap, ((0, 0), (radius, radius))), axis=1, out=csum[:, 1:])
    runs: dict[int, np.ndarray] = {}
    out = np.zeros((h, w), dtype=bool)
    for dy in range(-radius, radius + 1):
        half = math.isqrt(radius * radius - dy * dy)
        if half not in runs:
            runs[half] = (
                csum[:, radius + half + 1 : radius + half + 1 + w]
                > csum[:, radius - half : radius - half + w]
            )
        run = runs[half]
        # out[y] |= run[y + dy], rows that fall outside the image contribute nothing
        if dy >= 0:
            out[: h - dy] |= run[dy:]
        else:
            out[-dy:] |= run[: h + dy]
    return out


def _crop_to(*maps: np.ndarray) -> tuple[np.ndarray, ...]:
    """The maps cut to the bounding box of their set pixels (all set pixels stay inside)."""
    union = np.logical_or.reduce(maps)
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return tuple(m[box] for m in maps)


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUNDARY_TOLERANCE) -> int:
    """The dilation radius in pixels: `bound_th` itself if >= 1, else that fraction of the diagonal."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(shape)))


def f_measure(
    segmentation: np.ndarray, annotation: np.ndarray, bound_th: float = BOUNDARY_TOLERANCE
) -> float:
    """Boundary F-measure of one predicted `[H, W]` mask against one ground-truth mask."""
    radius = boundary_radius(segmentation.shape, bound_th)
    fg_boundary = seg2bmap(segmentation)
    gt_boundary = seg2bmap(annotation)
    n_fg = int(fg_boundary.sum())
    n_gt = int(gt_boundary.sum())
    # DAVIS's conventions for empty boundaries: nothing predicted has precision 1, nothing to
    # find has recall 1, so empty-vs-empty scores 1 and empty-vs-object scores 0.
    if n_fg == 0 or n_gt == 0:
        precision = 1.0 if n_fg == 0 else 0.0
        recall = 1.0 if n_gt == 0 else 0.0
    else:
        # matches are only counted on boundary pixels, so the boundaries' bounding box suffices
        fg_boundary, gt_boundary = _crop_to(fg_boundary, gt_boundary)
        precision = float((fg_boundary & dilate_disk(gt_boundary, radius)).sum()) / n_fg
        recall = float((gt_boundary & dilate_disk(fg_boundary, radius)).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def db_eval_boundary(
    annotation: np.ndarray, segmentation: np.ndarray, bound_th: float = BOUNDARY_TOLERANCE
) -> np.ndarray:
    """Boundary F-measure per frame of `[T, H, W]` masks (or a 0-d array for `[H, W]`)."""
    if annotation.shape != segmentation.shape:
        raise ValueError(f"annotation {annotation.shape} and segmentation {segmentation.shape} differ")
    if annotation.ndim == 2:
        return np.asarray(f_measure(segmentation, annotation, bound_th))
    if annotation.ndim != 3:
        raise ValueError(f"db_eval_boundary takes [H, W] or [T, H, W] masks, got {annotation.shape}")
    return np.array([f_measure(s, a, bound_th) for s, a in zip(segmentation, annotation)])


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """DAVIS's (mean, recall = fraction above 0.5, decay = first quarter minus last quarter)."""
    mean = float(np.nanmean(per_frame))
    recall = float(np.nanmean(per_frame > 0.5))
    ids = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(int)
    bins = [per_frame[ids[i] : ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


@dataclass
class ObjectScore:
    """One object's DAVIS statistics over the scored frames of its video."""

    j: float
    f: float
    j_recall: float
    f_recall: float
    j_decay: float
    f_decay: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "jf": self.jf}


def score_video(
    gt: np.ndarray, pred: np.ndarray, object_ids: list[int], bound_th: float = BOUNDARY_TOLERANCE
) -> dict[int, ObjectScore]:
    """Scores one video's predicted label maps against its ground truth, DAVIS semi-supervised.

    Args:
        gt (`np.ndarray`): integer label maps `[T, H, W]` of the annotated frames (0 = background).
        pred (`np.ndarray`): predicted label maps on the same frames.
        object_ids (`list[int]`): the objects to score (those prompted on the first frame).
        bound_th (`float`): boundary tolerance, a fraction of the diagonal or pixels if >= 1.

    Returns:
        `dict[int, ObjectScore]`: per object; the first and last frames are not scored, unless
        the video has fewer than three annotated frames, when all of them are.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    stray = sorted(set(np.unique(pred).tolist()) - set(object_ids) - {0})
    if stray:
        raise ValueError(f"prediction has labels {stray} that are not among the objects {object_ids}")
    if len(gt) >= 3:
        gt, pred = gt[1:-1], pred[1:-1]
    scores = {}
    for obj in object_ids:
        j = db_eval_iou(gt == obj, pred == obj)
        f = db_eval_boundary(gt == obj, pred == obj, bound_th)
        (jm, jr, jd), (fm, fr, fd) = db_statistics(j), db_statistics(f)
        scores[obj] = ObjectScore(j=jm, f=fm, j_recall=jr, f_recall=fr, j_decay=jd, f_decay=fd)
    return scores


def summarize(per_video: dict[str, dict[int, ObjectScore]]) -> dict[str, float]:
    """Dataset means over all objects of all videos: J, F, J&F (and DAVIS's recall and decay)."""
    objects = [score for video in per_video.values() for score in video.values()]
    if not objects:
        raise ValueError("no objects were scored")
    keys = ("j", "f", "j_recall", "f_recall", "j_decay", "f_decay")
    means = {key: float(np.mean([getattr(o, key) for o in objects])) for key in keys}
    return {
        "J": means["j"],
        "F": means["f"],
        "J&F": (means["j"] + means["f"]) / 2,
        "J_recall": means["j_recall"],
        "F_recall": means["f_recall"],
        "J_decay": means["j_decay"],
        "F_decay": means["f_decay"],
        "num_objects": float(len(objects)),
        "num_videos": float(len(per_video)),
    }
