"""Scoring folders of prediction PNGs against a dataset's annotations, and the results' outputs.

`score_video_folder` applies a protocol (`protocols.py`) to one video's ground-truth and
prediction folders, in either layout (detected per video, as SA-V's evaluator does);
`Results` holds every video's per-object tracks and writes what people read: the table, the
one-line JSON and the CSV files of the DAVIS toolkit.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sec_train.eval.metrics import summarize
from sec_train.eval.protocols import DAVIS, SEGMENTS, ObjectTrack, davis_tracks, sav_tracks, segment_frames
from sec_train.infer.video import read_binary_mask, read_id_png, read_labels


@dataclass
class VideoScores:
    """One video's tracks (overall and per SeCVOS segment) and, for a model's run, the frames
    where it saw scene changes and called the LVLM."""

    name: str
    tracks: list[ObjectTrack]
    segments: dict[str, list[ObjectTrack]] = field(default_factory=dict)
    scene_changes: list[str] = field(default_factory=list)
    lvlm_frames: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> VideoScores:
        segments = {k: [ObjectTrack(**t) for t in v] for k, v in data["segments"].items()}
        tracks = [ObjectTrack(**t) for t in data["tracks"]]
        return cls(data["name"], tracks, segments, data["scene_changes"], data["lvlm_frames"])


def _pngs(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.png"))


def _reader(folder: Path, read):
    def read_frame(frame: str) -> np.ndarray:
        path = folder / f"{frame}.png"
        if not path.is_file():
            raise FileNotFoundError(f"prediction {path} is missing: every annotated frame needs one")
        return read(path)

    return read_frame


def _as_labels(path: Path) -> np.ndarray:
    return read_binary_mask(path).astype(np.uint8)


def score_video_folder(
    gt_dir: Path,
    pred_dir: Path,
    protocol: str,
    skip_first_and_last: bool = True,
    segment: str | None = None,
    span: list[int] | None = None,
) -> list[ObjectTrack] | None:
    """One video's tracks under `protocol`; for a SeCVOS `segment`, those of its `span`
    (None when the video is left out of the segment)."""
    per_object = sorted(p for p in gt_dir.iterdir() if p.is_dir())
    if protocol == DAVIS:
        if per_object:
            raise ValueError(f"{gt_dir}: per-object annotations are scored with the SA-V protocol")
        return davis_tracks(
            gt_dir.name, _pngs(gt_dir), _reader(gt_dir, read_labels), _reader(pred_dir, read_id_png)
        )
    objects = [(folder.name, folder, pred_dir / folder.name) for folder in per_object] or [
        (None, gt_dir, pred_dir)
    ]
    tracks = []
    for name, gt_folder, pred_folder in objects:
        frames = _pngs(gt_folder)
        if segment is not None:
            frames = segment_frames(frames, span, segment)
            if frames is None:
                return None
        if skip_first_and_last:
            frames = frames[1:-1]
        read = _as_labels if name is not None else read_id_png
        found = sav_tracks(gt_dir.name, frames, _reader(gt_folder, read), _reader(pred_folder, read))
        if name is not None:
            if not found:
                raise ValueError(f"{gt_folder}: the object is empty on every scored frame")
            found[0].name = name
        tracks.extend(found)
    return tracks


def score_video(
    gt_dir: Path,
    pred_dir: Path,
    protocol: str,
    skip_first_and_last: bool = True,
    scene_info: dict | None = None,
) -> VideoScores:
    """One video's `VideoScores`: overall, and per SeCVOS segment when `scene_info` is given
    (segments never skip the first and last frame, as SeC's evaluator scores them)."""
    tracks = score_video_folder(gt_dir, pred_dir, protocol, skip_first_and_last)
    scores = VideoScores(gt_dir.name, tracks)
    for segment in SEGMENTS if scene_info is not None else ():
        span = scene_info.get(gt_dir.name, {}).get(segment)
        found = score_video_folder(gt_dir, pred_dir, protocol, False, segment, span)
        if found is not None:
            scores.segments[segment] = found
    return scores


def matched_videos(gt_root: Path, pred_root: Path, names: list[str] | None, strict: bool) -> list[str]:
    """The videos to score: those of `names` (default: every GT video folder) that have a
    prediction folder; with `strict`, a missing or extra one is an error naming them."""
    gt = set(names) if names is not None else {p.name for p in gt_root.iterdir() if p.is_dir()}
    if not pred_root.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_root} does not exist")
    pred = {p.name for p in pred_root.iterdir() if p.is_dir()}
    if strict:
        missing, extra = sorted(gt - pred), sorted(pred - gt) if names is None else []
        if missing or extra:
            raise ValueError(
                f"strict: videos in {gt_root} without predictions in {pred_root}: {missing}; "
                f"prediction folders with no ground truth: {extra}"
            )
    videos = sorted(gt & pred)
    if not videos:
        raise ValueError(f"no video of {gt_root} has a prediction folder in {pred_root}")
    return videos


@dataclass
class Results:
    """Every scored video's `VideoScores`; the summaries, table, JSON and CSV files of them."""

    videos: list[VideoScores]

    def summary(self, segment: str | None = None) -> dict[str, float]:
        """Dataset J, F, J&F, recall, decay (fractions), num_objects, num_videos; of one SeCVOS
        segment if named."""
        per_video = {}
        for video in self.videos:
            tracks = video.tracks if segment is None else video.segments.get(segment)
            if tracks:
                per_video[video.name] = {i: t.score() for i, t in enumerate(tracks)}
        return summarize(per_video)

    def segments(self) -> list[str]:
        return [s for s in SEGMENTS if any(s in v.segments for v in self.videos)]

    def as_json(self) -> dict:
        """The summary keys at the top, then `segments` and per-video, per-object means."""
        videos = {}
        for v in self.videos:
            objects = {t.name: t.score().as_dict() for t in v.tracks}
            j, f = np.mean([o["j"] for o in objects.values()]), np.mean([o["f"] for o in objects.values()])
            videos[v.name] = {"J": float(j), "F": float(f), "J&F": float(j + f) / 2, "objects": objects}
            if v.lvlm_frames or v.scene_changes:
                videos[v.name].update(lvlm_calls=len(v.lvlm_frames), scene_changes=v.scene_changes)
        lvlm_calls = sum(len(v.lvlm_frames) for v in self.videos)
        segments = {s: self.summary(s) for s in self.segments()}
        return {**self.summary(), "lvlm_calls": lvlm_calls, "segments": segments, "videos": videos}

    def table(self) -> str:
        """Per-video and mean J, F, J&F (and LVLM calls), then one line per SeCVOS segment."""
        width = max(16, *(len(v.name) for v in self.videos))
        lines = [f"{'video':<{width}} {'objects':>7} {'J':>7} {'F':>7} {'J&F':>7} {'LVLM':>5}"]
        rows = self.as_json()
        for name, row in rows["videos"].items():
            lines.append(
                f"{name:<{width}} {len(row['objects']):>7} {row['J']:>7.4f} {row['F']:>7.4f} "
                f"{row['J&F']:>7.4f} {row.get('lvlm_calls', 0):>5}"
            )
        for label, s in [("mean", rows), *rows["segments"].items()]:
            lines.append(
                f"{label:<{width}} {int(s['num_objects']):>7} {s['J']:>7.4f} {s['F']:>7.4f} "
                f"{s['J&F']:>7.4f} {rows['lvlm_calls'] if label == 'mean' else '':>5}"
            )
        return "\n".join(lines)

    def write_csv(self, out: Path, subset: str) -> list[Path]:
        """The DAVIS toolkit's `global_results-<subset>.csv` (J&F, J and F mean, recall, decay)
        and `per-sequence_results-<subset>.csv` (J and F mean per `<video>_<object>`), 3 decimals."""
        out.mkdir(parents=True, exist_ok=True)
        s = self.summary()
        paths = [out / f"global_results-{subset}.csv", out / f"per-sequence_results-{subset}.csv"]
        with paths[0].open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"])
            keys = ("J&F", "J", "J_recall", "J_decay", "F", "F_recall", "F_decay")
            writer.writerow([f"{s[k]:.3f}" for k in keys])
        with paths[1].open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Sequence", "J-Mean", "F-Mean"])
            for v in self.videos:
                for t in v.tracks:
                    score = t.score()
                    writer.writerow([f"{v.name}_{t.name}", f"{score.j:.3f}", f"{score.f:.3f}"])
        return paths

    def json_line(self) -> str:
        return json.dumps(self.as_json())
