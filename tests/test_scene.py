"""The scene-change detector: OpenCV parity and behaviour on cuts and motion."""

import numpy as np
import pytest

from sec_train.infer.scene import (
    SceneChangeDetector,
    bhattacharyya_distance,
    hs_histogram,
    resize_bilinear,
    rgb_to_hsv,
)


def _all_colours() -> np.ndarray:
    """Every 8-bit colour with a step of 3 per channel plus the grey ramp, as one image."""
    steps = np.arange(0, 256, 3, dtype=np.uint8)
    r, g, b = np.meshgrid(steps, steps, steps, indexing="ij")
    cube = np.stack([r, g, b], axis=-1).reshape(-1, 3)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.concatenate([cube, grey]).reshape(1, -1, 3)


def _scene(seed: int, shift: int = 0) -> np.ndarray:
    """A smooth random colour field (a 'scene'), optionally panned by `shift` pixels."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    field = resize_bilinear(coarse, 256)
    return np.roll(field, shift, axis=1)[:96, :128]


def test_hsv_known_colours():
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [128, 64, 0]]])
    hsv = rgb_to_hsv(colours.astype(np.uint8))[0]
    # OpenCV's ranges: H in [0, 180) (degrees / 2), S and V in [0, 256)
    np.testing.assert_array_equal(
        hsv[:5], [[0, 255, 255], [60, 255, 255], [120, 255, 255], [0, 0, 255], [0, 0, 0]]
    )
    assert hsv[5, 0] == 15 and hsv[5, 1] == 255 and hsv[5, 2] == 128


def test_hsv_matches_opencv_bit_for_bit():
    cv2 = pytest.importorskip("cv2")
    image = _all_colours()
    np.testing.assert_array_equal(rgb_to_hsv(image), cv2.cvtColor(image, cv2.COLOR_RGB2HSV))


def test_resize_is_within_one_level_of_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for shape in ((30, 50), (300, 170)):  # up- and downscaling
        image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
        diff = resize_bilinear(image, 128).astype(int) - cv2.resize(image, (128, 128)).astype(int)
        assert np.abs(diff).max() <= 1


def test_histogram_and_distance_match_opencv():
    cv2 = pytest.importorskip("cv2")
    ours, theirs = [], []
    for frame in (_scene(0), _scene(1)):
        ours.append(hs_histogram(frame, size=64))
        hsv = cv2.cvtColor(resize_bilinear(frame, 64), cv2.COLOR_BGR2HSV)  # the release's channel order
        theirs.append(cv2.calcHist([hsv], [0, 1], None, [60, 80], [0, 180, 0, 256]))
        np.testing.assert_array_equal(ours[-1], theirs[-1])
    normalized = [cv2.normalize(hist, hist) for hist in theirs]
    expected = cv2.compareHist(normalized[0], normalized[1], cv2.HISTCMP_BHATTACHARYYA)
    assert bhattacharyya_distance(*ours) == pytest.approx(expected, abs=1e-5)


def test_histogram_table_matches_direct_hsv_binning():
    # size = the image's own side, so the (identity) resize leaves every colour as it is
    colours = _all_colours().reshape(-1, 3)[:4900].reshape(70, 70, 3)
    hsv = rgb_to_hsv(np.ascontiguousarray(colours[..., ::-1])).astype(int)
    h_bins = np.floor(hsv[..., 0] / 3).astype(int)  # 60 bins over [0, 180)
    s_bins = np.floor(hsv[..., 1] * 80 / 256).astype(int)  # 80 bins over [0, 256)
    expected = np.zeros((60, 80))
    np.add.at(expected, (h_bins.ravel(), s_bins.ravel()), 1)
    np.testing.assert_array_equal(hs_histogram(colours, size=70), expected)


def test_distance_bounds():
    hist = hs_histogram(_scene(0), size=64)
    assert bhattacharyya_distance(hist, hist) == pytest.approx(0.0, abs=1e-7)
    disjoint = np.zeros_like(hist)
    disjoint[hist == 0] = 1
    assert bhattacharyya_distance(hist, disjoint) == pytest.approx(1.0)


def test_detector_fires_on_a_cut_and_not_on_small_motion():
    detector = SceneChangeDetector(size=128)
    frames = [_scene(0), _scene(0, shift=2), _scene(0, shift=4), _scene(7), _scene(7, shift=3)]
    flags = [detector.update(frame) for frame in frames]
    assert flags == [False, False, False, True, False]


def test_threshold_is_configurable():
    strict = SceneChangeDetector(threshold=1.0, size=128)
    assert not any(strict.update(frame) for frame in (_scene(0), _scene(7)))
    eager = SceneChangeDetector(threshold=0.0, size=128)
    eager.update(_scene(0))
    assert eager.update(_scene(0, shift=2))
