"""J and F against hand-computed cases and an independent dilation."""

import numpy as np
import pytest

from sec_train.eval.metrics import (
    boundary_radius,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    dilate_disk,
    f_measure,
    score_video,
    seg2bmap,
    summarize,
)


def _square(top: int, left: int, size: int = 10, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_identical_masks_score_one():
    mask = _square(20, 20)
    assert db_eval_iou(mask, mask) == 1.0
    assert f_measure(mask, mask) == 1.0


def test_disjoint_masks_score_zero():
    assert db_eval_iou(_square(5, 5), _square(60, 60)) == 0.0
    assert f_measure(_square(5, 5), _square(60, 60)) == 0.0


def test_boundary_map_of_a_square_is_the_outline_shifted_towards_the_origin():
    # rows/cols 20..29 set: the boundary is the outline of rows/cols 19..29 (11 x 11 -> 40 px)
    expected = np.zeros((100, 100), dtype=bool)
    expected[19:30, 19:30] = True
    expected[20:29, 20:29] = False
    np.testing.assert_array_equal(seg2bmap(_square(20, 20)), expected)


def test_shifted_square_has_known_overlap():
    # 100x100: tolerance ceil(0.008 * 141.4) = 2 px. Shift 3 px right: of the 40 outline
    # pixels, 10 + 10 on the top/bottom rows, 4 on the near column, 0 on the far column are
    # within 2 px of the other outline -> precision = recall = 24/40.
    gt, pred = _square(20, 20), _square(20, 23)
    assert boundary_radius(gt.shape) == 2
    assert f_measure(pred, gt) == pytest.approx(0.6)
    assert db_eval_iou(gt, pred) == pytest.approx(70 / 130)


def test_empty_masks_follow_davis_conventions():
    empty = np.zeros((50, 60), dtype=bool)
    obj = _square(10, 10, shape=(50, 60))
    assert db_eval_iou(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0
    assert db_eval_iou(obj, empty) == 0.0 and f_measure(empty, obj) == 0.0
    assert db_eval_iou(empty, obj) == 0.0 and f_measure(obj, empty) == 0.0


def test_absolute_pixel_tolerance():
    # with a 3 px tolerance every outline pixel of a 3 px shift has a partner within reach
    assert f_measure(_square(20, 23), _square(20, 20), bound_th=3) == 1.0


def test_disk_dilation_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    bmap = rng.random((37, 53)) > 0.97
    for radius in (1, 2, 5, 8):
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        disk = yy**2 + xx**2 <= radius**2
        expected = ndimage.binary_dilation(bmap, structure=disk)
        np.testing.assert_array_equal(dilate_disk(bmap, radius), expected)


def test_boundary_per_frame_stack():
    gt = np.stack([_square(20, 20), _square(20, 20)])
    pred = np.stack([_square(20, 20), _square(20, 23)])
    np.testing.assert_allclose(db_eval_boundary(gt, pred), [1.0, 0.6])


def test_statistics_mean_recall_decay():
    values = np.array([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0])
    mean, recall, decay = db_statistics(values)
    assert mean == pytest.approx(0.5)
    assert recall == pytest.approx(4 / 8)
    # DAVIS's quarters of 8 frames: [0:3] and [5:8] (inclusive bin edges)
    assert decay == pytest.approx(np.mean([1.0, 1.0, 0.8]) - np.mean([0.2, 0.0, 0.0]))


def test_score_video_skips_first_and_last_frame_and_averages_objects():
    gt = np.zeros((4, 100, 100), dtype=np.uint8)
    gt[:, 20:30, 20:30] = 1
    gt[:, 60:70, 60:70] = 2
    pred = gt.copy()
    pred[0] = 0  # first and last frames are not scored
    pred[3] = 0
    pred[2][pred[2] == 2] = 0  # object 2 lost on one scored frame
    scores = score_video(gt, pred, [1, 2])
    assert scores[1].j == 1.0 and scores[1].f == 1.0
    assert scores[2].j == 0.5 and scores[2].f == 0.5
    summary = summarize({"video": scores})
    assert summary["J"] == 0.75 and summary["F"] == 0.75 and summary["J&F"] == 0.75
    assert summary["num_objects"] == 2


def test_score_video_rejects_unknown_labels():
    gt = np.zeros((3, 8, 8), dtype=np.uint8)
    pred = gt.copy()
    pred[1, 0, 0] = 7
    with pytest.raises(ValueError, match="labels \\[7\\]"):
        score_video(gt, pred, [1])


def test_f_measure_matches_a_full_image_scipy_reference():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    radius = boundary_radius((60, 80))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    for _ in range(5):
        # blobs that touch the image border, where cropping and zero padding must agree
        gt = ndimage.gaussian_filter(rng.random((60, 80)), 4) > 0.5
        pred = gt ^ (ndimage.gaussian_filter(rng.random((60, 80)), 3) > 0.55)
        fg, gb = seg2bmap(pred), seg2bmap(gt)
        precision = (fg & ndimage.binary_dilation(gb, disk)).sum() / fg.sum()
        recall = (gb & ndimage.binary_dilation(fg, disk)).sum() / gb.sum()
        assert f_measure(pred, gt) == pytest.approx(2 * precision * recall / (precision + recall))
