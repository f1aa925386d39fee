"""`sec-train predict` and `sec-train eval` end to end on a saved toy model, plus their I/O."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sec_train.data.format import ShardWriter, make_sample, mask_to_rle, write_index
from sec_train.eval import cli, evaluate
from sec_train.eval.datasets import davis_videos, open_videos
from sec_train.infer import predict
from sec_train.infer.overlay import PALETTE, overlay, save_palette_png
from sec_train.infer.runtime import resolve_checkpoint
from sec_train.infer.video import read_labels
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.weights import save_model_dir
from tests.test_propagate import CUTS, synthetic_video


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("toy_model")
    save_model_dir(build_sec_model(ModelConfig(mode="fused")), directory)
    return directory


def _write_davis(root, name: str, num_frames: int = 9):
    """The synthetic video as DAVIS folders, annotated on every frame with its moving squares."""
    video = synthetic_video(num_frames)
    (root / "JPEGImages" / name).mkdir(parents=True)
    (root / "Annotations" / name).mkdir(parents=True)
    for t in range(num_frames):
        (root / "JPEGImages" / name / f"{t:05d}.jpg").write_bytes(video.frames[t])
        labels = np.zeros((72, 96), dtype=np.uint8)
        labels[10:30, 10 + t : 30 + t] = 2
        labels[40:65, 50 + t : 70 + t] = 5
        save_palette_png(labels, root / "Annotations" / name / f"{t:05d}.png")


def test_palette_is_davis():
    assert PALETTE[:6].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [128, 0, 128],
    ]


def test_palette_png_round_trips_ids(tmp_path):
    labels = np.array([[0, 1, 2], [5, 255, 0]], dtype=np.uint8)
    save_palette_png(labels, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]
    # 255 is DAVIS's void label and reads back as background
    assert read_labels(tmp_path / "m.png").tolist() == [[0, 1, 2], [5, 0, 0]]


def test_overlay_tints_objects_and_leaves_background():
    frame = np.full((8, 8, 3), 100, dtype=np.uint8)
    labels = np.zeros((8, 8), dtype=np.uint8)
    labels[2:7, 2:7] = 1
    out = overlay(frame, labels, alpha=0.5)
    assert (out[0, 0] == 100).all()
    assert out[4, 4].tolist() == [114, 50, 50]  # (100 + 128) / 2, 100 / 2, 100 / 2
    assert out[2, 2].tolist() == [128, 0, 0]  # the outline in the object's colour


def test_rgb_mask_is_an_error(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png is a RGB image"):
        read_labels(tmp_path / "rgb.png")


def test_binary_prompt_is_object_one(tmp_path):
    Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8), mode="L").save(tmp_path / "b.png")
    assert predict.prompt_labels(tmp_path / "b.png").tolist() == [[0, 1], [1, 0]]


def test_davis_folder_needs_a_first_frame_annotation(tmp_path):
    _write_davis(tmp_path, "vid", num_frames=3)
    (tmp_path / "Annotations" / "vid" / "00000.png").unlink()
    with pytest.raises(ValueError, match="first frame 00000.jpg has no annotation"):
        davis_videos(tmp_path)


def test_davis_subset_by_name_or_list_file_with_480p_level(tmp_path):
    _write_davis(tmp_path / "flat", "a", num_frames=2)
    _write_davis(tmp_path / "flat", "b", num_frames=2)
    root = tmp_path / "DAVIS"
    for kind in ("JPEGImages", "Annotations"):
        (root / kind).mkdir(parents=True)
        (tmp_path / "flat" / kind).rename(root / kind / "480p")
    listing = root / "ImageSets" / "2017" / "val.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("b\n")
    assert [v.name for v in open_videos(root)] == ["a", "b"]
    assert [v.name for v in open_videos(root, "val")] == ["b"]
    assert [v.name for v in open_videos(listing)] == ["b"]
    assert davis_videos(root)[0].frame_name(1) == "00001"  # the file stem
    with pytest.raises(FileNotFoundError, match="test.txt does not exist"):
        list(open_videos(root, "test"))


def test_predict_writes_masks_overlays_and_reports_lvlm_calls(checkpoint, tmp_path, capsys):
    _write_davis(tmp_path / "davis", "vid")
    frames, first = (
        tmp_path / "davis" / "JPEGImages" / "vid",
        tmp_path / "davis" / "Annotations" / "vid" / "00000.png",
    )
    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--video", str(frames), "--mask", str(first), "--out", str(out)]
    assert predict.main(argv) == 0
    assert sorted(p.name for p in (out / "masks" / "vid").iterdir()) == [f"{t:05d}.png" for t in range(9)]
    assert len(list((out / "overlays").iterdir())) == 9
    assert set(np.unique(read_labels(out / "masks" / "vid" / "00004.png"))) <= {0, 2, 5}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lvlm_calls"] == 2 and summary["scene_changes"] == CUTS and summary["objects"] == [2, 5]
    assert "2 LVLM calls" in capsys.readouterr().out
    # the released predictor's memory and post-processing, unless asked otherwise
    assert (summary["memory_selection"], summary["fill_hole_area"], summary["overlap"]) == (
        "reliable",
        8,
        "highest_logit",
    )
    options = [
        "--memory-selection",
        "recent",
        "--fill-hole-area",
        "0",
        "--overlap",
        "lower_id",
        "--no-overlays",
    ]
    assert predict.main([*argv, *options]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["memory_selection"], summary["fill_hole_area"], summary["overlap"]) == (
        "recent",
        0,
        "lower_id",
    )


def test_eval_davis_json_and_sam2_baseline(checkpoint, tmp_path, capsys):
    _write_davis(tmp_path, "a")
    _write_davis(tmp_path, "b", num_frames=5)
    base = ["--checkpoint", str(checkpoint), "--data", str(tmp_path), "--json", "--protocol", "sav"]
    assert cli.main(base) == 0
    sec = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert sorted(sec["videos"]) == ["a", "b"]
    assert sec["videos"]["a"]["lvlm_calls"] == 2 and sec["videos"]["b"]["lvlm_calls"] == 1
    assert sec["videos"]["a"]["scene_changes"] == ["00004", "00007"]
    assert sec["num_objects"] == 4
    objects = [o for v in sec["videos"].values() for o in v["objects"].values()]
    assert sec["J"] == pytest.approx(np.mean([o["j"] for o in objects]))
    assert sec["J&F"] == pytest.approx((sec["J"] + sec["F"]) / 2)
    assert cli.main([*base, "--sam2-only"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["lvlm_calls"] == 0


def test_eval_table_and_saved_masks(checkpoint, tmp_path, capsys):
    _write_davis(tmp_path / "data", "a", num_frames=4)
    argv = ["--checkpoint", str(checkpoint), "--data", str(tmp_path / "data"), "--save", str(tmp_path / "m")]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["video", "objects", "J", "F", "J&F", "LVLM"]
    assert lines[1].split()[0] == "a" and lines[-1].split()[0] == "mean"
    assert lines[-1].split()[1] == "5"  # DAVIS: objects 1..5, the largest label of frame 0
    assert len(list((tmp_path / "m" / "predictions" / "a").iterdir())) == 4


def test_shards_read_as_fully_annotated_videos(tmp_path):
    video = synthetic_video(3)
    masks = [[mask_to_rle(np.pad(np.ones((5, 5), bool), ((t, 67 - t), (0, 91)))), None] for t in range(3)]
    sample = make_sample(
        "clip", source="synth", video="clip", height=72, width=96, fps=6.0, frame_indices=[0, 4, 8],
        object_ids=[0, 9], frames=video.frames, masks=masks,
    )  # fmt: skip
    writer = ShardWriter(tmp_path, "val")
    writer.write(sample)
    write_index(tmp_path, writer.close())
    (loaded,) = list(open_videos(tmp_path))
    assert loaded.name == "clip" and len(loaded) == 3 and sorted(loaded.annotations) == [0, 1, 2]
    assert loaded.object_ids() == [1]  # object id 0 is label 1; object 9 is never visible
    assert loaded.labels(2)[2:7, :5].all() and loaded.labels(2).sum() == 25
    np.testing.assert_array_equal(loaded.frame(1), video.frame(1))
    assert loaded.frame_name(1) == "00001"


def test_evaluate_model_restores_training_mode(checkpoint, tmp_path):
    _write_davis(tmp_path, "a", num_frames=5)
    model = build_sec_model(ModelConfig(init=str(checkpoint))).train()
    scores = evaluate.evaluate_model(model, str(tmp_path), use_concept=False, max_videos=1)
    assert model.training
    assert {"J", "F", "J&F"} <= set(scores) and 0.0 <= scores["J&F"] <= 1.0
    assert scores["num_videos"] == 1 and scores["lvlm_calls"] == 0


def test_checkpoint_resolves_a_run_to_its_latest_checkpoint(tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    (step / "meta.json").write_text("{}")
    (step / "sec_config.json").write_text("{}")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-00000002")
    assert resolve_checkpoint(str(tmp_path / "run")) == str(step)
    assert resolve_checkpoint(str(step)) == str(step)
    with pytest.raises(FileNotFoundError, match="neither a SeC model"):
        resolve_checkpoint(str(tmp_path))


def test_a_stage1_model_is_evaluated_as_plain_sam2(tmp_path, capsys):
    torch.manual_seed(0)
    save_model_dir(build_sec_model(ModelConfig(mode="stage1")), tmp_path / "stage1")
    _write_davis(tmp_path / "data", "a", num_frames=6)
    assert (
        cli.main(["--checkpoint", str(tmp_path / "stage1"), "--data", str(tmp_path / "data"), "--json"]) == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1])["lvlm_calls"] == 0
    assert "stage-1 model: running SAM 2 only" in captured.err
