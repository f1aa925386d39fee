"""A model's `sec-train eval` split over chunks and processes, killed and resumed, in both layouts.

The toy model on a few synthetic videos: every split and the resumed run must give exactly the
numbers of one uninterrupted process (the same model on the same frames).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sec_train.eval import cli
from sec_train.infer import predict
from sec_train.infer.overlay import save_palette_png
from sec_train.infer.video import read_binary_mask, read_labels
from tests import test_predict
from tests.test_propagate import synthetic_video

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ["a", "b", "c"]
checkpoint = test_predict.checkpoint  # the saved toy model, a module fixture
_write_davis = test_predict._write_davis


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    for name in VIDEOS:
        _write_davis(root, name, num_frames=5)
    return root


def _eval(capsys, checkpoint, data, *argv) -> dict:
    model = ["--checkpoint", checkpoint, "--sam2-only"] if checkpoint else []
    args = [*model, "--data", data, "--json", "--no-report", *argv]
    assert cli.main([str(a) for a in args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def single(checkpoint, davis, tmp_path_factory):
    """One process, all videos: the numbers every other run must reproduce."""
    out = tmp_path_factory.mktemp("single")
    args = [
        "--checkpoint",
        checkpoint,
        "--data",
        davis,
        "--json",
        "--no-report",
        "--sam2-only",
        "--save",
        out,
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main([str(a) for a in args]) == 0
    return json.loads(stdout.getvalue().strip().splitlines()[-1])


def test_chunks_give_the_numbers_of_one_process(checkpoint, davis, single, tmp_path, capsys):
    out = tmp_path / "chunked"
    args = ["--save", out, "--num-chunks", "2"]
    first = ["--checkpoint", checkpoint, "--sam2-only", "--data", davis, *args, "--chunk-id", "0"]
    assert cli.main([str(a) for a in first]) == 0
    assert "1 videos of other chunks remain" in capsys.readouterr().out
    assert sorted(p.stem for p in (out / "progress").iterdir()) == ["a", "c"]  # chunk 0: videos 0 and 2
    result = _eval(capsys, checkpoint, davis, *args, "--chunk-id", "1")
    assert result == single
    assert single["num_objects"] == 15 and 0 < single["J&F"] < 1
    # progress made with other options is never mixed in
    with pytest.raises(ValueError, match=r"another evaluation \(differs in \['bank_size'\]\)"):
        _eval(capsys, checkpoint, davis, *args, "--bank-size", "3")


@pytest.mark.slow
def test_accelerate_launch_two_processes_gives_the_numbers_of_one(checkpoint, davis, single, tmp_path):
    out = tmp_path / "launched"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "sec_train.eval", "--checkpoint", str(checkpoint), "--data", str(davis), "--save", str(out),
        "--json", "--no-report", "--sam2-only",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == single
    assert sorted(p.stem for p in (out / "progress").iterdir()) == VIDEOS


@pytest.mark.slow
def test_a_killed_evaluation_resumes_without_redoing_finished_videos(
    checkpoint, davis, single, tmp_path, capsys
):
    out = tmp_path / "killed"
    args = ["--checkpoint", checkpoint, "--data", davis, "--save", out, "--sam2-only", "--no-report"]
    child = subprocess.Popen(
        [sys.executable, "-m", "sec_train.eval", *map(str, args)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    first = out / "progress" / "a.json"
    deadline = time.monotonic() + 120
    while not first.is_file() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    finished = {p.stem: p.stat().st_mtime_ns for p in (out / "progress").glob("*.json")}
    assert "a" in finished and len(finished) < len(VIDEOS), finished  # killed midway
    result = _eval(capsys, checkpoint, davis, "--save", out)
    assert result == single
    assert all((out / "progress" / f"{v}.json").stat().st_mtime_ns == t for v, t in finished.items())


def _write_per_object(root: Path, name: str, num_frames: int = 6) -> None:
    """SA-V layout: frames in `JPEGImages_24fps`, one folder per object in `Annotations_6fps`;
    object 001 (the blue square) is first annotated on frame 2."""
    video = synthetic_video(num_frames)
    (root / "JPEGImages_24fps" / name).mkdir(parents=True)
    for t in range(num_frames):
        (root / "JPEGImages_24fps" / name / f"{t:05d}.jpg").write_bytes(video.frames[t])
        for k, (rows, cols) in enumerate([((10, 30), (10 + t, 30 + t)), ((40, 65), (50 + t, 70 + t))]):
            mask = np.zeros((72, 96), dtype=np.uint8)
            if k == 0 or t >= 2:
                mask[rows[0] : rows[1], cols[0] : cols[1]] = 1
            (root / "Annotations_6fps" / name / f"{k:03d}").mkdir(parents=True, exist_ok=True)
            save_palette_png(mask, root / "Annotations_6fps" / name / f"{k:03d}" / f"{t:05d}.png")


def test_per_object_layout_is_predicted_in_its_own_layout_and_scored_as_sav(checkpoint, tmp_path, capsys):
    for name in ("sav_1", "sav_2"):
        _write_per_object(tmp_path / "sav", name)
    out = tmp_path / "out"
    result = _eval(capsys, checkpoint, tmp_path / "sav", "--save", out)
    predicted = out / "predictions" / "sav_1"
    assert sorted(p.name for p in predicted.iterdir()) == ["000", "001"]
    assert len(list((predicted / "001").iterdir())) == 6
    assert not read_binary_mask(predicted / "001" / "00001.png").any()  # before its first annotation
    # its prompt frame: its annotation, less what the lower label (object 000) covers
    prompt = read_binary_mask(predicted / "001" / "00002.png")
    annotation = read_binary_mask(tmp_path / "sav" / "Annotations_6fps" / "sav_1" / "001" / "00002.png")
    assert prompt.any() and not (prompt & ~annotation).any()
    assert Image.open(predicted / "000" / "00003.png").mode == "P"
    assert result["num_objects"] == 4  # SA-V rule: the two objects of each video
    rescored = _eval(capsys, None, tmp_path / "sav", "--predictions", predicted.parent)
    assert {k: rescored[k] for k in ("J", "F", "J&F")} == {k: result[k] for k in ("J", "F", "J&F")}


def test_report_pictures_are_written_large(checkpoint, davis, tmp_path, capsys):
    out = tmp_path / "report_run"
    args = ["--checkpoint", checkpoint, "--data", davis, "--save", out, "--max-videos", "1"]
    assert cli.main([str(a) for a in args]) == 0  # with the LVLM: scene changes and calls marked
    with Image.open(out / "report" / "jf_per_video.png") as bars:
        assert bars.width >= 1000 and bars.height >= 400
    with Image.open(out / "report" / "j_over_time" / "a.png") as curves:
        assert curves.width >= 1000 and curves.height >= 2 * 200  # a panel per object
    assert (out / "global_results-all.csv").is_file() and (out / "per-sequence_results-all.csv").is_file()
    # scoring those predictions again takes the run's scene changes and LVLM calls along
    capsys.readouterr()
    rescored = _eval(capsys, None, davis, "--predictions", out / "predictions", "--protocol", "sav")
    assert list(rescored["videos"]) == ["a"]  # not strict: the videos predicted
    assert rescored["videos"]["a"]["scene_changes"] == ["00004"] and rescored["lvlm_calls"] == 1


def test_predict_only_prompts_objects_that_appear_later_in_palette_videos(checkpoint, tmp_path, capsys):
    """YouTube-VOS / MOSE validation: only the frames where objects first appear are annotated,
    the scores come from a server; the predictions are written for every frame."""
    _write_davis(tmp_path / "ytvos", "v", num_frames=5)
    annotations = tmp_path / "ytvos" / "Annotations" / "v"
    for t in (1, 3, 4):
        (annotations / f"{t:05d}.png").unlink()
    late = read_labels(annotations / "00002.png")
    save_palette_png(np.where(late == 5, 5, 0).astype(np.uint8), annotations / "00002.png")  # object 5 joins
    first = read_labels(annotations / "00000.png")
    save_palette_png(np.where(first == 2, 2, 0).astype(np.uint8), annotations / "00000.png")
    out = tmp_path / "out"
    argv = [
        "--checkpoint",
        checkpoint,
        "--sam2-only",
        "--data",
        tmp_path / "ytvos",
        "--save",
        out,
        "--predict-only",
    ]
    assert cli.main([str(a) for a in argv]) == 0
    assert f"predictions of 1 videos in {out / 'predictions'}" in capsys.readouterr().out
    predicted = [read_labels(out / "predictions" / "v" / f"{t:05d}.png") for t in range(5)]
    assert not any((p == 5).any() for p in predicted[:2]) and (predicted[2] == 5).any()
    assert (predicted[0] == 2).sum() == 20 * 20  # the prompt frame is its annotation


def test_predict_takes_a_per_object_annotation_folder_and_writes_that_layout(checkpoint, tmp_path):
    _write_per_object(tmp_path / "sav", "sav_1", num_frames=4)
    out = tmp_path / "out"
    argv = [
        "--checkpoint", checkpoint, "--sam2-only", "--no-overlays", "--out", out,
        "--video", tmp_path / "sav" / "JPEGImages_24fps" / "sav_1",
        "--mask", tmp_path / "sav" / "Annotations_6fps" / "sav_1",
    ]  # fmt: skip
    assert predict.main([str(a) for a in argv]) == 0
    masks = out / "masks" / "sav_1"
    assert sorted(p.relative_to(masks).as_posix() for p in masks.rglob("*.png")) == [
        f"{k:03d}/{t:05d}.png" for k in range(2) for t in range(4)
    ]
    assert read_binary_mask(masks / "000" / "00000.png").sum() == 20 * 20  # the prompt
    assert json.loads((out / "summary.json").read_text())["objects"] == ["000", "001"]
