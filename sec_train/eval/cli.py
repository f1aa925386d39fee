"""`sec-train eval`: J, F and J&F of a SeC model, or of a folder of predictions, on a benchmark.

    sec-train eval --checkpoint DIR --data ROOT [--subset val] [--save OUT] [--json]
    sec-train eval --predictions PRED_DIR --data GT_ROOT [--scene-info scene_info.json] [--strict]
    accelerate launch [--multi_gpu ...] -m sec_train.eval --checkpoint DIR --data ROOT --save OUT

`--data` is a dataset root (DAVIS, MOSE, YouTube-VOS, LVOS: palette PNGs; SA-V, SeCVOS:
per-object PNGs; see `datasets.py`), a video list file in or beside it, or (with a model) a
shard directory; with `--predictions` it may also be the annotation folder itself (what
`sav_evaluator.py --gt_root` takes). A model's predictions are written in the dataset's layout
under `OUT/predictions/`; the videos are split over the launcher's processes and
`--num-chunks` (see `distributed.py`), and a killed run resumes where it stopped. Scoring
follows the DAVIS 2017 protocol on palette folders and SA-V's on per-object ones (`--protocol`
chooses; see `protocols.py`). Prints the table (and with `--json` a last line of JSON), and
writes the DAVIS toolkit's CSV files and the report pictures to the output folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sec_train.eval.datasets import (
    LAYOUTS,
    PER_OBJECT,
    annotation_dir,
    detect_layout,
    folder_source,
    open_videos,
)
from sec_train.eval.distributed import (
    PREDICTIONS_DIR,
    PROGRESS_DIR,
    Partition,
    check_run_options,
    is_finished,
    load_progress,
    save_progress,
    wait_for,
)
from sec_train.eval.evaluate import EVAL_FILL_HOLE_AREA
from sec_train.eval.protocols import DAVIS, PROTOCOLS, SAV, ObjectTrack, davis_tracks, sav_tracks
from sec_train.eval.report import write_report
from sec_train.eval.score import Results, VideoScores, matched_videos, score_video
from sec_train.infer.overlay import write_prediction
from sec_train.infer.propagate import PropagationStats, SeCPropagator
from sec_train.infer.runtime import (
    add_model_arguments,
    autocast,
    load_model,
    propagation_config,
    resolve_device,
)
from sec_train.infer.video import Video


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sec-train eval", description=__doc__.split("\n")[0])
    add_model_arguments(parser, fill_hole_area=EVAL_FILL_HOLE_AREA, checkpoint_required=False)
    parser.add_argument("--predictions", help="score this folder of prediction PNGs (no model)")
    parser.add_argument("--data", required=True, help="dataset root, video list, shard dir or GT folder")
    parser.add_argument("--subset", help="DAVIS ImageSets/2017/<subset>.txt, e.g. val")
    parser.add_argument("--layout", choices=LAYOUTS, help="annotation layout (default: detected)")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, help="davis or sav (default: davis for palettes, sav otherwise)"
    )
    parser.add_argument(
        "--do-not-skip-first-and-last-frame",
        dest="skip_first_and_last",
        action="store_false",
        help="SA-V protocol: score the first and last annotated frames too",
    )
    parser.add_argument("--strict", action="store_true", help="every GT video must have predictions")
    parser.add_argument("--scene-info", help="SeCVOS scene_info.json: also score each scene segment")
    parser.add_argument("--max-videos", type=int, help="evaluate only the first N videos")
    parser.add_argument("--save", help="output folder: predictions/, progress/, CSV files, report/")
    parser.add_argument("--out", help="where the CSV files and report go (default: --save, or PRED_DIR-eval)")
    parser.add_argument("--num-chunks", type=int, default=1, help="split the videos into N jobs")
    parser.add_argument("--chunk-id", type=int, default=0, help="the job this process is")
    parser.add_argument(
        "--predict-only",
        action="store_true",
        help="write predictions, score nothing: benchmarks scored on a server (MOSE, YouTube-VOS)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the report pictures")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON scores")
    return parser


def _gt_annotations(data: str, subset: str | None) -> tuple[Path, list[str] | None]:
    """The annotation folder and the video names (None: all) that `--data` names."""
    path = Path(data)
    if path.is_dir() and annotation_dir(path) is None and not (path / "index.json").is_file():
        if subset is not None:
            raise ValueError(f"--subset applies to a dataset root; {path} is an annotation folder")
        return path, None  # an annotation folder itself
    source = folder_source(data, subset)
    if source is None:
        raise ValueError(f"{data} is a shard directory: score predictions against a dataset folder")
    return annotation_dir(source[0]), source[1]


def _protocol(args: argparse.Namespace, layout: str | None) -> str:
    return args.protocol or (DAVIS if layout == "palette" else SAV)


def score_predictions(args: argparse.Namespace, scene_info: dict | None) -> Results:
    """`--predictions`: every matched video of the folder scored against the annotations."""
    annotations, names = _gt_annotations(args.data, args.subset)
    protocol = _protocol(args, args.layout or detect_layout(annotations))
    pred_root = Path(args.predictions)
    videos = matched_videos(annotations, pred_root, names, args.strict or protocol == DAVIS)
    scores = []
    for video in tqdm(videos[: args.max_videos], desc="score", unit="video"):
        found = score_video(
            annotations / video, pred_root / video, protocol, args.skip_first_and_last, scene_info
        )
        _add_run_marks(found, pred_root.parent / PROGRESS_DIR / f"{video}.json")
        scores.append(found)
    return Results(scores)


def _add_run_marks(scores: VideoScores, progress: Path) -> None:
    """The scene changes and LVLM calls of the `--save` run that wrote the predictions, if any."""
    if progress.is_file():
        run = json.loads(progress.read_text())
        scores.scene_changes, scores.lvlm_frames = run["scene_changes"], run["lvlm_frames"]


def _shard_tracks(
    video: Video, predicted: dict[str, np.ndarray], protocol: str, skip: bool
) -> list[ObjectTrack]:
    """A shard video scored in memory: its stored frames are its annotated frames."""
    position = {video.frame_name(t): t for t in video.annotations}
    frames = sorted(position, key=position.get)
    read_gt, read_pred = (lambda f: video.labels(position[f])), predicted.__getitem__
    if protocol == DAVIS:
        return davis_tracks(video.name, frames, read_gt, read_pred)
    return sav_tracks(video.name, frames[1:-1] if skip else frames, read_gt, read_pred)


class _ModelRun:
    """Predicts, writes and scores one video at a time; the model loads on first use."""

    def __init__(self, args: argparse.Namespace, out: Path, scene_info: dict | None):
        self.args, self.out, self.scene_info = args, out, scene_info
        source = folder_source(args.data, args.subset)
        self.annotations = None if source is None else annotation_dir(source[0])
        layout = args.layout or (detect_layout(self.annotations) if self.annotations else None)
        self.protocol = _protocol(args, layout or PER_OBJECT)  # shards: SA-V's rule
        self.propagator = None

    def _device(self) -> torch.device:
        local_rank = os.environ.get("LOCAL_RANK")
        if self.args.device == "auto" and torch.cuda.is_available() and local_rank is not None:
            return torch.device(f"cuda:{local_rank}")
        return resolve_device(self.args.device)

    def evaluate(self, video: Video) -> None:
        if self.propagator is None:
            self.device = self._device()
            model = load_model(self.args.checkpoint, self.device)
            self.propagator = SeCPropagator(model, propagation_config(self.args, model))
        stats, predicted = PropagationStats(), {}
        with autocast(self.device, self.args.dtype):
            for t, _, labels in self.propagator.run(video, stats):
                write_prediction(self.out / PREDICTIONS_DIR, video, t, labels)
                if self.annotations is None and t in video.annotations:
                    predicted[video.frame_name(t)] = labels
        if self.args.predict_only:
            scores = VideoScores(video.name, [])
        elif self.annotations is None:
            skip = self.args.skip_first_and_last
            scores = VideoScores(video.name, _shard_tracks(video, predicted, self.protocol, skip))
        else:
            pred_dir = self.out / PREDICTIONS_DIR / video.name
            scores = score_video(
                self.annotations / video.name,
                pred_dir,
                self.protocol,
                self.args.skip_first_and_last,
                self.scene_info,
            )
        scores.scene_changes = [video.frame_name(t) for t in stats.scene_changes]
        scores.lvlm_frames = [video.frame_name(t) for t in stats.lvlm_frames]
        save_progress(self.out, scores)


def _run_options(args: argparse.Namespace, protocol: str) -> dict:
    """What decides a run's predictions and scores (chunking and --max-videos do not)."""
    keys = ("checkpoint", "data", "subset", "layout", "sam2_only", "scene_threshold", "bank_size", "dtype")
    options = {key: getattr(args, key) for key in keys}
    options["checkpoint"] = str(Path(args.checkpoint).resolve())
    options["data"] = str(Path(args.data).resolve())
    options.update(protocol=protocol, skip_first_and_last=args.skip_first_and_last)
    options.update(scene_info=args.scene_info, predict_only=args.predict_only)
    return options


def evaluate_checkpoint(args: argparse.Namespace, out: Path, scene_info: dict | None) -> Results | None:
    """This process's share of the videos; the gathered results on the process that scores
    (rank 0, once every video is finished), None on the others."""
    partition = Partition.from_env(args.num_chunks, args.chunk_id)
    run = _ModelRun(args, out, scene_info)
    check_run_options(out, _run_options(args, run.protocol))
    names = []
    videos = itertools.islice(open_videos(args.data, args.subset, args.layout), args.max_videos)
    bar = tqdm(
        desc=f"eval (worker {partition.chunk_id * partition.world_size + partition.rank})", unit="video"
    )
    for i, video in enumerate(videos):
        names.append(video.name)
        if partition.owns(i) and not is_finished(out, video.name):
            run.evaluate(video)
            bar.update()
    bar.close()
    if not names:
        raise ValueError(f"{args.data}: no videos to evaluate")
    if partition.rank != 0:
        return None
    wait_for(out, [n for i, n in enumerate(names) if partition.in_chunk(i)])
    remaining = [n for n in names if not is_finished(out, n)]
    if remaining:
        print(
            f"chunk {args.chunk_id} finished; {len(remaining)} videos of other chunks remain. The last "
            "chunk to finish scores them all (or rerun any chunk once they are done)."
        )
        return None
    if args.predict_only:
        print(f"predictions of {len(names)} videos in {out / PREDICTIONS_DIR}")
        return None
    return Results(load_progress(out, names))


def _output_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.predictions:
        return Path(f"{Path(args.predictions).resolve()}-eval")
    return Path(args.save)


def _check(args: argparse.Namespace) -> None:
    """Option combinations that cannot work fail before anything runs."""
    if (args.predictions is None) == (args.checkpoint is None):
        raise SystemExit(
            "sec-train eval: give --checkpoint (evaluate a model) or --predictions (score a folder)"
        )
    split = args.num_chunks > 1 or int(os.environ.get("WORLD_SIZE", 1)) > 1
    if args.checkpoint and args.save is None and (split or args.predict_only):
        raise SystemExit(
            "sec-train eval: a split or --predict-only run needs --save OUT (shared by all processes)"
        )


def _write_outputs(results: Results, args: argparse.Namespace) -> None:
    """The DAVIS toolkit's CSV files and the report pictures, where `_output_dir` says."""
    out = _output_dir(args)
    written = results.write_csv(out, args.subset or "all")
    if not args.no_report:
        written.append(write_report(results, out))
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check(args)
    scene_info = json.loads(Path(args.scene_info).read_text()) if args.scene_info else None
    with tempfile.TemporaryDirectory(prefix="sec_eval_") as scratch:
        if args.predictions:
            results = score_predictions(args, scene_info)
        else:
            results = evaluate_checkpoint(args, Path(args.save or scratch), scene_info)
        if results is None:
            return 0
        print(results.table())
        if args.save or args.predictions or args.out:
            _write_outputs(results, args)
        if args.json:
            print(results.json_line())
    return 0
