"""`sec-train eval`'s per-segment breakdown: frames before the first scene cut vs at and after it."""

import numpy as np
import pytest

from sec_train.eval.evaluate import EvalResult, VideoResult, segment_scores
from sec_train.eval.metrics import ObjectScore
from sec_train.infer.propagate import PropagationStats


def _labels(frames: int, present: list[bool]) -> np.ndarray:
    out = np.zeros((frames, 20, 20), np.uint8)
    for t, on in enumerate(present):
        if on:
            out[t, 5:15, 5:15] = 1
    return out


def test_post_cut_scores_only_the_frames_at_and_after_the_cut():
    gt = _labels(6, [True] * 6)
    pred = _labels(6, [True, True, True, False, False, True])  # lost at the cut (frame 3)
    scores = segment_scores(gt, pred, list(range(6)), cut=3, object_ids=[1])
    # scored frames 1..4 (DAVIS leaves out the first and last): 1, 2 before the cut, 3, 4 after
    assert scores["pre_cut"][1] == pytest.approx((1.0, 1.0))
    assert scores["post_cut"][1] == pytest.approx((0.0, 0.0))
    half = segment_scores(gt, pred, list(range(6)), cut=2, object_ids=[1])
    assert half["post_cut"][1] == pytest.approx((1 / 3, 1 / 3))  # frames 2, 3, 4: one of three right


def test_segments_follow_frame_positions_not_indices():
    gt = _labels(4, [True] * 4)
    pred = _labels(4, [True, True, False, True])
    # annotated frames 0, 4, 8, 12 of a longer video; the cut at frame 6 splits 4 | 8
    scores = segment_scores(gt, pred, [0, 4, 8, 12], cut=6, object_ids=[1])
    assert scores["pre_cut"][1] == pytest.approx((1.0, 1.0))
    assert scores["post_cut"][1] == pytest.approx((0.0, 0.0))


def test_summary_averages_post_cut_over_videos_with_a_cut():
    score = ObjectScore(j=0.5, f=0.5, j_recall=0, f_recall=0, j_decay=0, f_decay=0)
    with_cut = VideoResult(
        "a", {1: score}, PropagationStats(6), [3], {"pre_cut": {1: (1.0, 0.8)}, "post_cut": {1: (0.2, 0.4)}}
    )
    without = VideoResult("b", {1: score}, PropagationStats(6))
    summary = EvalResult([with_cut, without]).summary()
    assert summary["J&F"] == pytest.approx(0.5)
    assert summary["J&F_post_cut"] == pytest.approx(0.3) and summary["J_post_cut"] == pytest.approx(0.2)
    assert summary["J&F_pre_cut"] == pytest.approx(0.9)
    assert summary["num_cut_videos"] == 1
    assert "J&F_post_cut" not in without.means() and with_cut.means()["J&F_post_cut"] == pytest.approx(0.3)
    assert "J&F_post_cut" not in EvalResult([without]).summary()
