"""`bench track` times like work: on a toy SAM 2 holding the same weights, its runners of the
tracker and of Meta's predictor hand out the same tracked masks, transformers' the same prompted
frame as Meta's, and the lockstep timer refuses a run that stops short."""

import pytest
import torch

pytest.importorskip("sam2")

from sec_train.bench.track import (  # noqa: E402
    lockstep,
    meta_steps,
    ours_steps,
    prompts,
    transformers_model,
    transformers_steps,
)
from sec_train.model.tracker import Sam2Tracker  # noqa: E402
from tests.test_convert_sam2_parity import meta_sam2, parity_config, randomize  # noqa: E402

FRAMES, SIZE = 4, 128


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    config = parity_config()
    meta = meta_sam2(config)
    randomize(meta)
    return meta, transformers_model(meta, config)


@pytest.mark.parametrize("objects", [1, 3])
@torch.inference_mode()
def test_runners_hand_out_the_same_masks(models, objects):
    meta, model = models
    frames = torch.randn(FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    masks = prompts(objects, SIZE)
    tracker = Sam2Tracker(model, memory_dtype=torch.bfloat16, mask_pointer_multimask=False)
    ours = list(ours_steps(tracker, frames, masks))
    theirs = list(meta_steps(meta, frames, masks))
    hf = list(transformers_steps(model, frames, masks))
    assert len(ours) == len(theirs) == len(hf) == FRAMES
    for t in range(1, FRAMES):
        assert ours[t].shape == (objects, SIZE, SIZE)
        torch.testing.assert_close(
            ours[t], theirs[t], atol=1e-4, rtol=0, msg=lambda m, t=t: f"frame {t}: {m}"
        )
    # the prompted frame: the tracker hands out the prompt itself as +-10 logits, Meta and
    # transformers the prompt as low-resolution logits brought back to the image size
    assert ((ours[0] > 0) == masks).all() and (ours[0].abs() == 10).all()
    torch.testing.assert_close(hf[0], theirs[0], atol=1e-4, rtol=0)
    assert all(x.shape == (objects, SIZE, SIZE) for x in hf)


def test_lockstep_averages_and_names_a_short_run():
    runs = {"full": lambda: iter([torch.zeros(1)] * 3), "short": lambda: iter([torch.zeros(1)] * 2)}
    with pytest.raises(RuntimeError, match="short gave 2 frames, expected 3"):
        lockstep(runs, 3, "cpu")
    times = lockstep({"full": runs["full"]}, 3, "cpu")
    assert set(times["full"]) == {"wall", "cpu"} and times["full"]["wall"] >= 0
