"""The keyframe bank: which frames it keeps, the update rule, and what it draws."""

import numpy as np
import pytest

from sec_train.data.draw import draw_contour
from sec_train.data.images import resize_image
from sec_train.infer.keyframes import KeyframeBank, joins_bank


def _frame(value: int, shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    return np.full((*shape, 3), value, dtype=np.uint8)


def _mask(shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[10:30, 20:40] = True
    return mask


def test_update_rule_needs_lvlm_nonempty_mask_and_confident_score():
    mask = _mask()
    assert joins_bank(True, mask, 1.5)
    assert not joins_bank(False, mask, 1.5)  # LVLM not used on the frame
    assert not joins_bank(True, np.zeros_like(mask), 1.5)  # object lost
    assert not joins_bank(True, mask, 1.0)  # the logit must be strictly above 1


def test_bank_keeps_first_and_latest_six():
    bank = KeyframeBank(image_size=16)
    bank.add(0, _frame(0), _mask())
    for t in range(1, 12):
        assert bank.update(t, _frame(t), _mask(), object_score_logit=3.0, used_lvlm=True)
    assert len(bank) == 7
    assert [k.frame_index for k in bank.keyframes()] == [0, 6, 7, 8, 9, 10, 11]
    assert bank.images()[1][0, 0, 0] == 6  # each keyframe keeps its own frame's pixels


def test_rejected_frames_do_not_enter():
    bank = KeyframeBank(image_size=16, max_size=3)
    bank.add(0, _frame(0), _mask())
    assert not bank.update(1, _frame(1), _mask(), object_score_logit=5.0, used_lvlm=False)
    assert not bank.update(2, _frame(2), _mask(), object_score_logit=0.5, used_lvlm=True)
    assert bank.update(3, _frame(3), _mask(), object_score_logit=5.0, used_lvlm=True)
    assert [k.frame_index for k in bank.keyframes()] == [0, 3]


def test_bank_of_one_shows_only_the_first_frame():
    bank = KeyframeBank(image_size=16, max_size=1)
    bank.add(0, _frame(0), _mask())
    bank.add(5, _frame(5), _mask())
    assert [k.frame_index for k in bank.keyframes()] == [0]


def test_keyframes_are_outlined_at_frame_resolution_then_resized():
    # official inference: label_img_with_mask draws on the full frame (modeling_sec.py:723-730),
    # predict_forward resizes it to 448 (:668)
    bank = KeyframeBank(image_size=20)
    frame = _frame(50, shape=(40, 40))
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 10:30] = True
    bank.add(0, frame, mask)
    image = bank.images()[0]
    assert image.shape == (20, 20, 3)
    full = draw_contour(frame, mask)  # 2 px at 40 px: rows/cols 10, 11 and 28, 29
    assert np.array_equal(image, resize_image(full, 20))
    greenish = (image[..., 1].astype(int) - image[..., 0]) > 100
    assert greenish[5, 5:15].all() and greenish[14, 5:15].all()  # the outline, 1 px at 20 px
    assert not greenish[6, 6] and not greenish[:4].any() and not greenish[16:].any()
    at_lvlm_size = draw_contour(resize_image(frame, 20), mask[::2, ::2])  # 2 px at 20 px
    assert not np.array_equal(image, at_lvlm_size)


def test_mismatched_mask_is_an_error():
    bank = KeyframeBank(image_size=16)
    with pytest.raises(ValueError, match="frame 3"):
        bank.add(3, _frame(0), np.zeros((10, 10), dtype=bool))
