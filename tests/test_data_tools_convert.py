"""Converters, verify and stats on synthetic videos, checked against the source files."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from data_tools.cli import main as sec_data
from data_tools.synth import render_video, synthesize
from data_tools.verify import verify
from sec_train.data.format import (
    ShardWriter,
    decode_record,
    iter_records,
    read_index,
    rle_to_mask,
    write_index,
)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, 5, frames=12, height=36, width=48, objects=3, sav=True)
    return out


def _samples(shard_dir):
    return {
        s.header["video"]: s
        for info in read_index(shard_dir)["shards"]
        for s in (decode_record(r, info["name"]) for r in iter_records(shard_dir / info["name"]))
    }


def _convert(*args, workers=1):
    return sec_data(["convert", *map(str, args), "--workers", str(workers)])


def _mask(sample, pos, obj):
    rle = sample.masks[pos][sample.header["object_ids"].index(obj)]
    h, w = sample.header["height"], sample.header["width"]
    return np.zeros((h, w), bool) if rle is None else rle_to_mask(rle, h, w)


def test_round_trip_davis_folders_convert_verify_load(synth_dir, tmp_path):
    out = tmp_path / "davis"
    assert (
        _convert(
            "davis", "--root", synth_dir, "--split", "train", "--out", out, "--chunk-videos", 2, workers=2
        )
        == 0
    )
    assert verify(out) == []
    samples = _samples(out)
    assert sorted(samples) == [f"synth{i:05d}" for i in range(5)]
    for name, sample in samples.items():
        jpegs = sorted((synth_dir / "JPEGImages" / name).glob("*.jpg"))
        assert sample.frames == [p.read_bytes() for p in jpegs]
        for pos, png in enumerate(sorted((synth_dir / "Annotations" / name).glob("*.png"))):
            labels = np.asarray(Image.open(png))
            for obj in sample.header["object_ids"]:
                np.testing.assert_array_equal(_mask(sample, pos, obj), labels == obj)


def test_convert_resumes_and_never_leaves_half_written_shards(synth_dir, tmp_path):
    out = tmp_path / "shards"
    args = ("davis", "--root", synth_dir, "--split", "x", "--out", out, "--chunk-videos", 2)
    assert _convert(*args) == 0
    first = read_index(out)
    mtimes = {s["name"]: (out / s["name"]).stat().st_mtime_ns for s in first["shards"]}
    redo = first["shards"][1]["name"]
    (out / ".parts" / (redo.rsplit("-", 1)[0] + ".json")).unlink()  # as if killed before the manifest
    assert _convert(*args) == 0
    assert read_index(out) == first
    changed = [n for n, t in mtimes.items() if (out / n).stat().st_mtime_ns != t]
    assert changed == [redo]

    writer = ShardWriter(tmp_path / "partial", "p")
    writer.write(_samples(out)["synth00000"])
    assert [p.name for p in (tmp_path / "partial").iterdir()] == ["p-000.tar.tmp"]


def test_sav_converter_decodes_the_annotated_frames(synth_dir, tmp_path):
    out = tmp_path / "sav"
    assert (
        _convert("sav", "--videos", synth_dir / "sav", "--annotations", synth_dir / "sav", "--out", out) == 0
    )
    assert verify(out) == []
    sample = _samples(out)["synth00002"]
    video = render_video("synth00002", 2, frames=12, height=36, width=48, objects=3)
    assert sample.header["frame_indices"] == [0, 4, 8]
    for pos, index in enumerate(sample.header["frame_indices"]):
        frame = np.asarray(Image.open(io.BytesIO(sample.frames[pos])).convert("RGB")).astype(float)
        assert np.abs(frame - video.frames[index]).mean() < 12  # h264 + JPEG, lossy
        for k, obj in enumerate(sample.header["object_ids"]):
            np.testing.assert_array_equal(_mask(sample, pos, obj), video.masks[index, k])


def test_custom_binary_and_coco_layouts(synth_dir, tmp_path):
    video = render_video("synth00001", 1, frames=12, height=36, width=48, objects=3)
    root = tmp_path / "binary"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "JPEGImages" / "v").symlink_to(synth_dir / "JPEGImages" / "synth00001")
    for k in range(3):
        obj_dir = root / "Annotations" / "v" / str(k + 7)
        obj_dir.mkdir(parents=True)
        for t in range(0, 12, 2):  # every other frame annotated
            Image.fromarray(video.masks[t, k].astype(np.uint8) * 255).save(obj_dir / f"{t:05d}.png")
    assert _convert("custom", "--root", root, "--layout", "binary", "--out", tmp_path / "b") == 0
    sample = _samples(tmp_path / "b")["v"]
    assert sample.header["object_ids"] == [7, 8, 9] and sample.header["frame_indices"] == list(
        range(0, 12, 2)
    )
    np.testing.assert_array_equal(_mask(sample, 3, 8), video.masks[6, 1])

    square = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]
    names = [f"synth00001/{t:05d}.jpg" for t in range(3)]
    coco = {
        "videos": [{"id": 5, "name": "c", "file_names": names, "height": 36, "width": 48}],
        "annotations": [{"video_id": 5, "id": 1, "segmentations": [square, None, square]}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    images = synth_dir / "JPEGImages"
    assert (
        _convert("custom", "--coco", tmp_path / "coco.json", "--images", images, "--out", tmp_path / "c") == 0
    )
    sample = _samples(tmp_path / "c")["c"]
    assert sample.header["visible"] == {"1": [0, 2]}
    mask = _mask(sample, 0, 1)
    assert mask[12:19, 11:29].all() and mask.sum() < 21 * 11 and not mask[:8].any()


def test_verify_names_shard_and_key_of_a_corrupt_sample(synth_dir, tmp_path, capsys):
    good = _samples(synth_dir / "shards")
    bad = good["synth00003"]
    bad.frames[2] = bad.frames[2][:50]
    writer = ShardWriter(tmp_path, "t")
    for sample in (good["synth00000"], bad):
        writer.write(sample)
    write_index(tmp_path, writer.close())
    problems = verify(tmp_path)
    assert len(problems) == 1 and "t-000.tar key synth00003: frame 2" in problems[0]
    assert sec_data(["stats", str(tmp_path)]) == 0
    assert "videos 2  objects 6  frames 24" in capsys.readouterr().out


def test_ytvos_layout_takes_objects_from_meta_json(synth_dir, tmp_path):
    split = tmp_path / "ytvos" / "train"
    for kind in ("JPEGImages", "Annotations"):
        (split / kind).mkdir(parents=True)
        (split / kind / "clip").symlink_to(synth_dir / kind / "synth00004")
    meta = {"videos": {"clip": {"objects": {"1": {}, "2": {}, "3": {}, "5": {}}}}}
    (split / "meta.json").write_text(json.dumps(meta))
    assert _convert("ytvos", "--root", tmp_path / "ytvos", "--split", "train", "--out", tmp_path / "y") == 0
    sample = _samples(tmp_path / "y")["clip"]
    assert sample.header["object_ids"] == [1, 2, 3, 5] and sample.header["visible"]["5"] == []
    assert sample.header["fps"] == 30.0 and sample.header["source"] == "ytvos"


def test_sav_release_tree_as_downloaded(synth_dir, tmp_path):
    # sav_train/sav_000, sav_001: mp4 and json side by side
    for i, name in enumerate(f"synth{i:05d}" for i in range(5)):
        folder = tmp_path / "sav_train" / f"sav_{i % 2:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in (".mp4", "_manual.json"):
            (folder / f"{name}{suffix}").symlink_to(synth_dir / "sav" / f"{name}{suffix}")
    assert _convert("sav", "--root", tmp_path / "sav_train", "--out", tmp_path / "train") == 0
    assert sorted(_samples(tmp_path / "train")) == [f"synth{i:05d}" for i in range(5)]
    # sav_val: 24 fps JPEG folders, per-object PNGs on every 4th frame
    video = render_video("synth00003", 3, frames=12, height=36, width=48, objects=3)
    val = tmp_path / "sav_val"
    (val / "JPEGImages_24fps").mkdir(parents=True)
    (val / "JPEGImages_24fps" / "sav_x").symlink_to(synth_dir / "JPEGImages" / "synth00003")
    for k in range(3):
        obj_dir = val / "Annotations_6fps" / "sav_x" / f"{k:03d}"
        obj_dir.mkdir(parents=True)
        for t in range(0, 12, 4):
            Image.fromarray(video.masks[t, k].astype(np.uint8) * 255).save(obj_dir / f"{t:05d}.png")
    assert _convert("sav", "--root", val, "--out", tmp_path / "val") == 0
    sample = _samples(tmp_path / "val")["sav_x"]
    assert sample.header["source"] == "sav" and sample.header["object_ids"] == [0, 1, 2]
    assert sample.header["frame_indices"] == [0, 4, 8]
    assert sample.frames[1] == (synth_dir / "JPEGImages" / "synth00003" / "00004.jpg").read_bytes()
    np.testing.assert_array_equal(_mask(sample, 2, 1), video.masks[8, 1])
