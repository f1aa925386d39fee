"""Synthetic videos: the events the demo and tests rely on actually happen."""

import json

import numpy as np
import pytest

from data_tools.cli import main as sec_data
from data_tools.synth import PART_COLORS, _concept_cut, _give_parts, _new_object, render_video
from sec_train.data.format import read_index
from sec_train.eval.datasets import open_videos


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


def _colours(image: np.ndarray, mask: np.ndarray) -> set[tuple[int, ...]]:
    """An object's few flat colours (rounded against JPEG-free render noise of std 4)."""
    values, counts = np.unique(image[mask].astype(int) // 32, axis=0, return_counts=True)
    return {tuple(v) for v, c in zip(values, counts) if c >= 0.05 * mask.sum()}


def test_concept_cut_changes_the_look_keeps_shape_and_part_and_adds_an_old_look_distractor():
    video = render_video("v", 3, frames=12, height=72, width=96, objects=1, concept_cut=True)
    (cut,) = video.cuts
    before, after = video.frames[cut - 1].astype(int), video.frames[cut].astype(int)
    mask_before, mask_after = video.masks[cut - 1, 0], video.masks[cut, 0]
    assert video.masks[:, 0].any((1, 2)).all()  # the object never leaves

    def wearing(image: np.ndarray, body: set[tuple[int, ...]], mask: np.ndarray) -> int:
        """Pixels outside `mask` in one of the `body` colours."""
        hits = np.zeros(mask.shape, bool)
        for colour in body:
            hits |= (image // 32 == colour).all(-1)
        return int((hits & ~mask).sum())

    old, new = _colours(before, mask_before), _colours(after, mask_after)
    kept = old & new
    assert len(kept) == 1  # the centre part only; body and stripe colours change
    # the distractor appears at the cut, outside the object, in the object's old body colours
    old_body = old - kept
    assert wearing(after, old_body, mask_after) > 0.15 * mask_before.sum()  # the part covers half
    assert wearing(before, old_body, mask_before) < 0.05 * mask_before.sum()


def test_every_part_colour_in_a_video_is_worn_once():
    """The part identifies the object: no bystander or distractor may wear the object's part."""
    rng = np.random.default_rng(0)
    objs = [_new_object(rng, 96, 128, 8, can_hide=False) for _ in range(3)]
    free = _give_parts(rng, objs)
    distractors = _concept_cut(rng, objs[:1], 2, free)
    assert len({obj.part for obj in objs + distractors}) == 5
    with pytest.raises(ValueError, match="part colours"):
        render_video("v", 0, frames=8, objects=2, concept_cut=True, bystanders=4, distractors=1)


def test_parts_without_concept_cut_keep_every_look():
    video = render_video("v", 1, frames=8, height=96, width=128, objects=2, parts=True)
    (cut,) = video.cuts
    # object 1 never leaves (only object 0 may); its colours, centre part included, survive the cut
    before = _colours(video.frames[cut - 1], video.masks[cut - 1, 1])
    after = _colours(video.frames[cut], video.masks[cut, 1])

    def near(a: tuple[int, ...], colours: set[tuple[int, ...]]) -> bool:  # noise crosses one bin edge
        return any(max(abs(x - y) for x, y in zip(a, c)) <= 1 for c in colours)

    assert all(near(c, after) for c in before) and all(near(c, before) for c in after)
    assert any((np.abs(np.array(c) * 32 + 16 - PART_COLORS) < 32).all(-1).any() for c in before)


def test_still_objects_stay_put_and_in_view():
    kwargs = dict(frames=12, height=96, width=128, objects=3, scene_cut=False, parts=True)
    still = render_video("v", 4, still=True, **kwargs)
    moving = render_video("v", 4, **kwargs)
    # every frame shows the same masks, every object in view (none hides, as object 0 may)
    assert (still.masks == still.masks[:1]).all() and still.masks.any(axis=(2, 3)).all()
    assert not (moving.masks == moving.masks[:1]).all()


def test_synth_shards_record_their_scene_cuts(tmp_path):
    args = [
        "synth",
        "--out",
        str(tmp_path),
        "--videos",
        "1",
        "--frames",
        "8",
        "--size",
        "48x36",
        "--concept-cut",
    ]
    assert sec_data(args) == 0
    (video,) = open_videos(tmp_path / "shards")
    assert video.scene_cuts and 2 <= video.scene_cuts[0] <= 6
    cut = video.scene_cuts[0]  # the same cut as SeCVOS segments, for `sec-train eval --scene-info`
    segments = json.loads((tmp_path / "scene_info.json").read_text())["synth00000"]
    assert segments == {"first_segment": [0, cut - 1], "second_segment": [cut, 7]}
