"""Stage-1/2 samplers, augmentations, prompts and collators."""

import numpy as np
import pytest
import torch

from data_tools.synth import encode_jpeg, render_video
from sec_train.data.augment import ClipAugment, warp, warp_grid
from sec_train.data.collate import Stage2Collator
from sec_train.data.config import AugmentConfig, Stage1Config, Stage2Config
from sec_train.data.draw import GREEN, draw_contour
from sec_train.data.format import make_sample, mask_to_rle
from sec_train.data.prompts import training_prompt
from sec_train.data.stage1 import Stage1Sampler
from sec_train.data.stage2 import Stage2Sampler, draw_outline
from sec_train.model.tokenizer import build_toy_tokenizer
from sec_train.tokens import ANSWERS, IMG_CONTEXT, IMG_END, QUESTIONS


@pytest.fixture(scope="module")
def tokenizer():
    return build_toy_tokenizer()


@pytest.fixture(scope="module")
def sample():
    video = render_video("v", 3, frames=20, height=48, width=64, objects=3)
    return make_sample(
        "v", source="synth", video="v", height=48, width=64, fps=24, frame_indices=list(range(20)),
        object_ids=[1, 2, 3], frames=[encode_jpeg(f, 95) for f in video.frames],
        masks=[[mask_to_rle(m) for m in ms] for ms in video.masks],
    )  # fmt: skip


def test_stage2_plan_follows_the_recipe(sample, tokenizer):
    sampler = Stage2Sampler(Stage2Config(noise_prob=1.0), mode="fused", tokenizer=tokenizer,
                            lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)  # fmt: skip
    visible = sample.header["visible"]
    noisy = 0
    for seed in range(200):
        obj = 1 + seed % 3
        plan = sampler.plan(sample.header, obj, np.random.default_rng(seed))
        assert 1 <= len(plan.context) <= 15 and plan.context == list(
            range(plan.target - len(plan.context), plan.target)
        )
        assert 1 <= len(plan.refs) <= 7 and plan.refs == sorted(set(plan.refs))
        assert all(r in plan.context for r in plan.refs)
        assert all(r in visible[str(o)] for r, o in zip(plan.refs, plan.outlined))
        replaced = [i for i, o in enumerate(plan.outlined) if o != obj]
        assert all(0 < i < len(plan.refs) - 1 for i in replaced)  # only middle references
        assert len(replaced) <= max(0, len(plan.refs) - 2) // 2
        noisy += bool(replaced)
    assert noisy > 10


def test_stage2_example_outlines_references_and_keeps_the_target_clean(sample, tokenizer):
    sampler = Stage2Sampler(Stage2Config(noise_prob=0.0), mode="fused", tokenizer=tokenizer,
                            lvlm_image_size=64, sam_image_size=32, num_image_tokens=2)  # fmt: skip
    rng = np.random.default_rng(5)
    plan = sampler.plan(sample.header, 2, np.random.default_rng(5))
    example = sampler(sample, 2, rng)
    green = (example.lvlm_images.permute(0, 2, 3, 1) == torch.tensor(GREEN, dtype=torch.uint8)).all(-1)
    assert example.lvlm_images.shape == (len(plan.refs) + 1, 3, 64, 64)
    assert all(green[i].sum() > 10 for i in range(len(plan.refs))) and green[-1].sum() < 3
    assert example.sam_images.shape == (len(plan.context) + 1, 3, 32, 32)
    assert (
        example.sam_masks.shape == (len(plan.context) + 1, 32, 32) and example.sam_masks.dtype == torch.bool
    )
    assert (example.input_ids == tokenizer.convert_tokens_to_ids(IMG_CONTEXT)).sum() == 2 * (
        len(plan.refs) + 1
    )


def test_prompt_labels_only_the_answer(tokenizer):
    ids, labels = training_prompt(tokenizer, 3, 4, np.random.default_rng(1))
    text = tokenizer.decode(ids)
    assert text.count(IMG_END) == 3 and any(q in text for q in QUESTIONS)
    answer = tokenizer.decode(labels[labels != -100])
    assert answer in {a + "<|im_end|>" for a in ANSWERS}
    assert (labels != -100).nonzero().min() > (
        ids == tokenizer.convert_tokens_to_ids(IMG_END)
    ).nonzero().max()


def test_collator_pads_to_a_multiple_of_8_and_packs_frames(sample, tokenizer):
    sampler = Stage2Sampler(Stage2Config(), mode="concept_only", tokenizer=tokenizer,
                            lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)  # fmt: skip
    examples = [sampler(sample, o, np.random.default_rng(o)) for o in (1, 2, 3)]
    batch = Stage2Collator(tokenizer.pad_token_id)(examples)
    lengths = [e.input_ids.numel() for e in examples]
    assert batch.input_ids.shape[1] % 8 == 0 and batch.input_ids.shape[1] - max(lengths) < 8
    assert batch.attention_mask.sum(1).tolist() == lengths
    assert (batch.labels[batch.attention_mask == 0] == -100).all()
    assert (batch.input_ids[batch.attention_mask == 0] == tokenizer.pad_token_id).all()
    assert batch.lvlm_frames_per_sample.tolist() == [e.lvlm_images.shape[0] for e in examples]
    assert batch.sam_frames_per_sample.tolist() == [1, 1, 1] and batch.sam_images.dtype == torch.uint8
    assert torch.equal(batch.lvlm_images[: examples[0].lvlm_images.shape[0]], examples[0].lvlm_images)


def test_warp_matches_numpy_flip_and_rotation():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    masks = torch.rand(2, 1, 16, 16) > 0.5
    flipped, flipped_masks = warp(images, masks, warp_grid(True, 0.0, 0.0, 16, 16, 16))
    np.testing.assert_allclose(flipped.numpy(), images.flip(-1).float().numpy(), atol=1e-3)
    assert torch.equal(flipped_masks, masks.flip(-1))
    rotated, rotated_masks = warp(images, masks, warp_grid(False, 90.0, 0.0, 16, 16, 16))
    expected = np.rot90(images.numpy(), k=1, axes=(2, 3)).astype(np.float32)  # counter-clockwise on screen
    np.testing.assert_allclose(rotated.numpy(), expected, atol=1e-3)
    assert torch.equal(rotated_masks, torch.from_numpy(np.rot90(masks.numpy(), 1, (2, 3)).copy()))


def test_clip_augmentation_is_consistent_across_frames():
    frame = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    mask = torch.zeros(1, 20, 30, dtype=torch.bool)
    mask[:, 5:12, 8:20] = True
    no_frame_jitter = AugmentConfig(frame_brightness=0, frame_contrast=0, frame_saturation=0)
    augment = ClipAugment.draw(no_frame_jitter, np.random.default_rng(0), 4, 20, 30, 24)
    outputs = [augment.apply(t, frame, mask) for t in range(4)]
    assert outputs[0][0].shape == (3, 24, 24) and outputs[0][1].shape == (1, 24, 24)
    assert all(torch.equal(outputs[0][0], o[0]) and torch.equal(outputs[0][1], o[1]) for o in outputs)
    jittered = ClipAugment.draw(AugmentConfig(), np.random.default_rng(0), 4, 20, 30, 24)
    assert not torch.equal(jittered.apply(0, frame, mask)[0], jittered.apply(1, frame, mask)[0])
    assert torch.equal(jittered.apply(0, frame, mask)[1], jittered.apply(1, frame, mask)[1])


def test_half_scale_frames_warp_like_full_frames():
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(60.0), indexing="ij")
    full = torch.stack([2 * x + 2 * y + 20 * c for c in range(3)])[None].to(torch.uint8)  # smooth ramps
    half = full.float().view(1, 3, 20, 2, 30, 2).mean((3, 5)).round().to(torch.uint8)  # as libjpeg's 1/2
    masks = torch.zeros(1, 1, 40, 60, dtype=torch.bool)
    grid = warp_grid(False, 20.0, 10.0, 40, 60, 16)
    from_full, from_half = warp(full, masks, grid)[0], warp(half, masks, grid)[0]
    inside = from_full > 0
    assert (from_full - from_half)[inside].abs().mean() < 3  # one grid, same geometry at both scales
    assert (from_full - warp(full.flip(-1), masks, grid)[0])[inside].abs().mean() > 30


def test_stage1_clip_starts_on_a_visible_object(sample):
    sampler = Stage1Sampler(Stage1Config(num_frames=6, stride=2, max_objects=2), sam_image_size=32)
    for seed in range(20):
        positions, objects = sampler.pick(sample.header, np.random.default_rng(seed))
        assert positions == list(range(positions[0], positions[0] + 11, 2)) and positions[-1] < 20
        assert 1 <= len(objects) <= 2 and all(
            positions[0] in sample.header["visible"][str(o)] for o in objects
        )
    example = sampler(sample, None, np.random.default_rng(0))
    assert example.images.shape == (6, 3, 32, 32) and example.masks.shape[:2] == (6, len(objects))
    assert example.masks[0].flatten(1).any(1).all()


def test_outline_around_the_mask_equals_the_full_contour():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((40, 50), bool)
        y, x, h, w = rng.integers(0, 40), rng.integers(0, 50), rng.integers(1, 30), rng.integers(1, 30)
        mask[y : y + h, x : x + w] = rng.random((min(h, 40 - y), min(w, 50 - x))) > 0.3
        image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
        expected = draw_contour(image, mask, thickness=2)
        draw_outline(image, mask, 2)
        np.testing.assert_array_equal(image, expected)
