"""Frame and mask resizing against PIL, the reference the rest of the field uses."""

import io

import numpy as np
import pytest
from PIL import Image

from sec_train.data.images import decode_jpeg, resize_chw, resize_image, resize_mask


@pytest.mark.parametrize(("h", "w", "size"), [(72, 128, 48), (37, 53, 128), (90, 60, 90)])
def test_resize_matches_pil_bilinear(h, w, size):
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR)).astype(int)
    assert np.abs(resize_image(Image.fromarray(image), size).astype(int) - expected).max() <= 1
    assert resize_chw(image, size).shape == (3, size, size)


@pytest.mark.parametrize(("h", "w", "size"), [(37, 53, 128), (300, 200, 1024), (480, 854, 448)])
def test_mask_resize_matches_pil_nearest(h, w, size):
    mask = np.random.default_rng(1).random((h, w)) > 0.5
    expected = (
        np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127
    )
    np.testing.assert_array_equal(resize_mask(mask, size), expected)


def test_decode_checks_the_size_and_decodes_reduced_when_asked():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(buffer, format="JPEG")
    assert decode_jpeg(buffer.getvalue(), 150, (600, 400)).size == (300, 200)  # libjpeg 1/2 scale
    with pytest.raises(ValueError, match="expected 640x400"):
        decode_jpeg(buffer.getvalue(), None, (640, 400))
