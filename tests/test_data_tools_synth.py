"""Synthetic videos: the events the demo and tests rely on actually happen."""

import numpy as np

from data_tools.cli import main as sec_data
from data_tools.synth import render_video
from sec_train.data.format import read_index


def test_synth_has_occlusion_disappearance_and_a_scene_cut():
    video = render_video("v", 4, frames=24, height=60, width=80, objects=3)
    masks = video.masks
    assert (masks.sum(1) <= 1).all()  # an occluded part belongs to the object in front only
    visible = masks.any((2, 3))  # [T, K]
    assert visible.any(0).all()
    gone = np.flatnonzero(~visible[:, 0])
    assert (
        gone.size and visible[: gone[0], 0].any() and visible[gone[-1] + 1 :, 0].any()
    )  # leaves, comes back
    (cut,) = video.cuts
    change = np.abs(np.diff(video.frames.astype(float), axis=0)).mean((1, 2, 3))
    assert change[cut - 1] > 2 * np.delete(change, cut - 1).max()  # the background changes at the cut


def test_synth_command_is_deterministic(tmp_path):
    for out in ("a", "b"):
        args = ["synth", "--out", str(tmp_path / out), "--videos", "2", "--frames", "6", "--size", "40x30"]
        assert sec_data(args) == 0
    assert (
        read_index(tmp_path / "a" / "shards")["shards"][0]["sha256"]
        == (read_index(tmp_path / "b" / "shards")["shards"][0]["sha256"])
    )
    assert len(list((tmp_path / "a" / "Annotations" / "synth00001").glob("*.png"))) == 6
