import numpy as np
import pytest

from sec_train.data.draw import GREEN, contour_mask, draw_contour


def test_contour_of_square_is_its_ring():
    mask = np.zeros((10, 10), bool)
    mask[2:7, 3:8] = True
    line = contour_mask(mask, thickness=1)
    expected = mask.copy()
    expected[3:6, 4:7] = False  # interior of a 5x5 square is its 3x3 centre
    np.testing.assert_array_equal(line, expected)


def test_thickness_two_grows_the_line_both_ways():
    mask = np.zeros((12, 12), bool)
    mask[3:9, 3:9] = True
    line = contour_mask(mask, thickness=2)
    assert line[2, 5] and line[4, 5]  # one pixel outside and one inside the boundary
    assert not line[5, 5] and not line[0, 5]


def test_draw_contour_paints_only_the_line():
    image = np.full((10, 10, 3), 7, np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    out = draw_contour(image, mask)
    line = contour_mask(mask, 2)
    assert (out[line] == GREEN).all() and (out[~line] == 7).all()
    assert (image == 7).all()  # input untouched


def test_draw_contour_rejects_size_mismatch():
    with pytest.raises(ValueError, match="image is"):
        draw_contour(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5), bool))
