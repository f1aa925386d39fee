"""Stage-1/2 samplers, augmentations, prompts and collators."""

import random

import numpy as np
import pytest
import torch

from data_tools.synth import encode_jpeg, render_video
from sec_train.data.augment import ClipAugment, warp, warp_grid
from sec_train.data.collate import Stage2Collator
from sec_train.data.config import AugmentConfig, Stage1Config, Stage2Config
from sec_train.data.draw import draw_contour
from sec_train.data.format import make_sample, mask_to_rle
from sec_train.data.images import object_mask, resize_chw, resize_image, resize_mask, sample_frame
from sec_train.data.prompts import inference_prompt, inference_tokens, training_prompt, training_tokens
from sec_train.data.stage1 import Stage1Sampler
from sec_train.data.stage2 import Stage2Sampler, draw_outline
from sec_train.model.tokenizer import build_toy_tokenizer
from sec_train.tokens import ANSWERS, IMG_CONTEXT, QUESTIONS


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


# 30 annotated frames, 4 objects; object 1 is hidden for a while, object 4 shows on 3 frames
STAGE2_HEADER = {
    "frame_indices": list(range(0, 120, 4)),
    "object_ids": [1, 2, 3, 4],
    "visible": {
        "1": [*range(0, 10), *range(16, 30)],
        "2": list(range(5, 21)),
        "3": list(range(0, 30, 3)),
        "4": [2, 3, 25],
    },
}


def official_stage2_frames(visible, n, nprng):
    """`SegJSONDataset._sample_frames` (sec_seg_dataset.py:379-406; max_sam_sampled_frames 16,
    max_sampled_frames 8 from sec_4b.py:131), transcribed: (start, target, references)."""
    num_g_memory_frames = nprng.randint(1, 16) + 1
    num_memory_frames = nprng.randint(0, 8 - 1) + 1
    valid_start = [i for i in visible if i < n - num_g_memory_frames]
    if not valid_start:
        start = visible[0]
        num_g_memory_frames = n - start
    else:
        start = nprng.choice(valid_start, 1, replace=False)[0]
    target = start + num_g_memory_frames - 1
    remain = list(set(visible) - {start, target})
    if len(remain) > num_memory_frames:
        remain = list(nprng.choice(remain, num_memory_frames, replace=False))
    return int(start), int(target), [int(r) for r in remain]


def official_stage2_plan(header, obj, nprng, rnd):
    """The frames and the noise of `SegJSONDataset.__getitem__` (sec_seg_dataset.py:230-259),
    transcribed: (start, target, references, outlined object of each reference)."""
    n, visible = len(header["frame_indices"]), header["visible"]
    start, target, refs = official_stage2_frames(visible[str(obj)], n, nprng)
    outlined = [obj] * len(refs)
    remain = [o for o in header["object_ids"] if o != obj]
    num_noise_objects = rnd.randint(0, min(2, len(remain)))
    if num_noise_objects > 0 and len(refs) + 1 > 2:
        noise = []
        for other in rnd.sample(remain, num_noise_objects):
            noise += [(r, other) for r in official_stage2_frames(visible[str(other)], n, nprng)[2]]
        rnd.shuffle(noise)
        max_replace = max(0, min((len(refs) + 1 - 2) // 2, len(noise)))
        num_replace = max_replace if max_replace < 2 else rnd.randint(1, max_replace)
        for i, idx in enumerate(sorted(rnd.sample(range(1, len(refs)), num_replace))):
            refs[idx], outlined[idx] = noise[i]
    return start, target, refs, outlined


def test_stage2_plans_are_drawn_as_the_official_dataset_draws_them(tokenizer):
    sampler = Stage2Sampler(Stage2Config(), mode="concept_only", tokenizer=tokenizer,
                            lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)  # fmt: skip
    nprng, rnd, draws = np.random.RandomState(0), random.Random(0), 4000
    ours, official = [], []
    for seed in range(draws):
        plan = sampler.plan(STAGE2_HEADER, 1, np.random.default_rng(seed))
        ours.append((plan.start, plan.target, plan.refs, plan.outlined))
        official.append(official_stage2_plan(STAGE2_HEADER, 1, nprng, rnd))
    visible = STAGE2_HEADER["visible"]
    for start, target, refs, outlined in ours:
        own = [r for r, o in zip(refs, outlined) if o == 1]
        assert start in visible["1"] and 1 <= target - start <= 15 and start not in own and target not in own
        assert all(r in visible[str(o)] for r, o in zip(refs, outlined)) and outlined[:1] == [1][: len(refs)]
    features = {
        "start": lambda s, t, r, o: s,
        "target - start": lambda s, t, r, o: t - s,
        "references": lambda s, t, r, o: len(r),
        "a reference after the target": lambda s, t, r, o: any(x > t for x in r),
        "references in time order": lambda s, t, r, o: r == sorted(r),
        "noise references": lambda s, t, r, o: sum(x != 1 for x in o),
    }
    for name, feature in features.items():
        tv = _total_variation(
            _distribution([feature(*e) for e in ours]), _distribution([feature(*e) for e in official])
        )
        assert tv < 0.08, (name, tv)
    for name, items in [("reference frames", lambda e: e[2]), ("outlined objects", lambda e: e[3])]:
        tv = _total_variation(
            _distribution([x for e in ours for x in items(e)]),
            _distribution([x for e in official for x in items(e)]),
        )
        assert tv < 0.08, (name, tv)
    assert sum(any(x > t for x in r) for _, t, r, _ in ours) > draws // 4  # after the target too


def _green(images: torch.Tensor) -> torch.Tensor:
    """[N, H, W] pixels that are clearly green (resizing blends the drawn line's colour)."""
    r, g, b = images.int().unbind(1)
    return (g - torch.maximum(r, b)) > 100


def test_stage2_cut_target_prob_prefers_scene_cut_targets(sample, tokenizer):
    header = {**sample.header, "scene_cuts": [9]}
    counts = {}
    for prob in (0.0, 0.5, 1.0):
        sampler = Stage2Sampler(Stage2Config(cut_target_prob=prob), mode="fused", tokenizer=tokenizer,
                                lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)  # fmt: skip
        plans = [sampler.plan(header, 1, np.random.default_rng(seed)) for seed in range(200)]
        counts[prob] = sum(plan.target == 9 for plan in plans)
    assert counts[1.0] == 200 and 70 < counts[0.5] < 130 and counts[0.0] < 30
    # the official draw is untouched when off or when the video records no cut
    for seed in range(20):
        off = Stage2Sampler(Stage2Config(), mode="fused", tokenizer=tokenizer,
                            lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)  # fmt: skip
        on = Stage2Sampler(Stage2Config(cut_target_prob=1.0), mode="fused", tokenizer=tokenizer,
                           lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)  # fmt: skip
        a = off.plan(header, 1, np.random.default_rng(seed))
        assert a == on.plan(sample.header, 1, np.random.default_rng(seed))


def test_stage2_refs_before_target_draws_references_as_inference_has_them(sample, tokenizer):
    header = {**sample.header, "scene_cuts": [9]}

    def plans(**options):
        sampler = Stage2Sampler(Stage2Config(cut_target_prob=1.0, add_noise=False, **options), mode="fused",
                                tokenizer=tokenizer, lvlm_image_size=28, sam_image_size=32,
                                num_image_tokens=2)  # fmt: skip
        return [sampler.plan(header, 1, np.random.default_rng(seed)) for seed in range(100)]

    official, before = plans(), plans(refs_before_target=True)
    assert any(r > p.target for p in official for r in p.refs)  # the official draw looks past the cut
    assert all(r < p.target for p in before for r in p.refs)
    # the same start and target; as many references as asked while the frames before allow
    assert [(p.start, p.target) for p in official] == [(p.start, p.target) for p in before]
    assert any(len(p.refs) > 1 for p in before)
    # only the start frame before the target: the references come from after it, not none
    late = {**header, "visible": {"1": list(range(3, 11))}, "scene_cuts": [4]}
    sampler = Stage2Sampler(Stage2Config(cut_target_prob=1.0, refs_before_target=True, add_noise=False),
                            mode="concept_only", tokenizer=tokenizer, lvlm_image_size=28, sam_image_size=32,
                            num_image_tokens=2)  # fmt: skip
    plan = sampler.plan(late, 1, np.random.default_rng(0))
    assert (plan.start, plan.target) == (3, 4) and plan.refs and all(r > 4 for r in plan.refs)


def test_stage2_example_outlines_references_and_keeps_the_target_clean(sample, tokenizer):
    sampler = Stage2Sampler(Stage2Config(add_noise=False), mode="fused", tokenizer=tokenizer,
                            lvlm_image_size=64, sam_image_size=32, num_image_tokens=2)  # fmt: skip
    rng = np.random.default_rng(5)
    plan = sampler.plan(sample.header, 2, np.random.default_rng(5))
    example = sampler(sample, 2, rng)
    green = _green(example.lvlm_images)
    assert example.lvlm_images.shape == (len(plan.refs) + 1, 3, 64, 64)
    assert all(green[i].sum() > 10 for i in range(len(plan.refs))) and green[-1].sum() < 3
    assert example.sam_images.shape == (len(plan.context) + 1, 3, 32, 32)
    assert (
        example.sam_masks.shape == (len(plan.context) + 1, 32, 32) and example.sam_masks.dtype == torch.bool
    )
    assert example.sam_masks[0].any()  # the fused clip starts where the object is visible
    assert (example.input_ids == tokenizer.convert_tokens_to_ids(IMG_CONTEXT)).sum() == 2 * (
        len(plan.refs) + 1
    )


def test_stage2_contour_is_drawn_at_the_original_resolution(sample, tokenizer):
    # sec_seg_dataset.py:341-349: cv2.drawContours on the full frame, then the 448 resize
    sampler = Stage2Sampler(Stage2Config(add_noise=False), mode="concept_only", tokenizer=tokenizer,
                            lvlm_image_size=16, sam_image_size=32, num_image_tokens=2)  # fmt: skip
    plan = sampler.plan(sample.header, 1, np.random.default_rng(3))
    example = sampler(sample, 1, np.random.default_rng(3))
    ref = plan.refs[0]
    full = np.array(sample_frame(sample, ref))
    drawn_then_resized = resize_chw(draw_contour(full, object_mask(sample, ref, 1)), 16)
    resized_then_drawn = torch.from_numpy(
        draw_contour(resize_image(full, 16), resize_mask(object_mask(sample, ref, 1), 16))
    ).permute(2, 0, 1)
    assert torch.equal(example.lvlm_images[0], drawn_then_resized)
    assert not torch.equal(example.lvlm_images[0], resized_then_drawn)


# Hand-written: xtuner's qwen_chat template with no system block, 3 frames of 2 image tokens
# joined by newlines, the question right after the last block (sec_seg_dataset.py:167-200).
BLOCKS = (
    "<img><IMG_CONTEXT><IMG_CONTEXT></img>\n"
    "<img><IMG_CONTEXT><IMG_CONTEXT></img>\n"
    "<img><IMG_CONTEXT><IMG_CONTEXT></img>"
)
QUESTION = "Based on the object marked in the first several images, segment the object in the last frame."


def test_training_prompt_is_the_official_token_sequence(tokenizer):
    ids, labels = training_tokens(tokenizer, 3, 2, QUESTION, "Sure, [SEG].")
    instruction = "<|im_start|>user\n" + BLOCKS + QUESTION + "<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(ids) == instruction + "Sure, [SEG].<|im_end|>\n"

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    # encode_fn.py:49-83: input, output (+ SUFFIX) and SEP tokenized apart; only the output learned
    prompt, output, sep = encode(instruction), encode("Sure, [SEG].<|im_end|>"), encode("\n")
    assert ids.tolist() == prompt + output + sep
    assert labels.tolist() == [-100] * len(prompt) + output + [-100] * len(sep)


def test_training_prompt_draws_the_official_questions_and_answers(tokenizer):
    rng, seen = np.random.default_rng(1), set()
    for _ in range(200):
        ids, labels = training_prompt(tokenizer, 1, 2, rng)
        text, answer = tokenizer.decode(ids), tokenizer.decode(labels[labels != -100])
        seen.add((text[text.index("</img>") + 6 : text.index("<|im_end|>")], answer))
    assert {q for q, _ in seen} == set(QUESTIONS) and {a for _, a in seen} == {
        a + "<|im_end|>" for a in ANSWERS
    }
    assert QUESTION in QUESTIONS and "Sure, the segmentation result is [SEG]." in ANSWERS


def test_inference_prompt_is_the_official_token_sequence(tokenizer):
    # modeling_sec.py:687-700: "It is [SEG]." appended to the question inside the user turn
    ids = inference_prompt(tokenizer, 3, 2)
    expected = (
        "<|im_start|>user\n" + BLOCKS + "Please segment the object in the last frame based on the object "
        "labeled in the first several images.It is [SEG].<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(ids) == expected
    assert ids.tolist() == tokenizer(expected, add_special_tokens=False)["input_ids"]


def test_inference_tokens_label_only_the_answer_inside_the_user_turn(tokenizer):
    ids, labels = inference_tokens(tokenizer, 3, 2, "It is [SEG]red.")
    text = tokenizer.decode(ids)
    assert text.endswith("several images.It is [SEG]red.<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.decode(labels[labels != -100]) == "It is [SEG]red."
    labelled = torch.nonzero(labels != -100).flatten()
    assert (labelled.diff() == 1).all()
    assert ids[labelled[-1] + 1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    default_ids, _ = inference_tokens(tokenizer, 3, 2)
    assert torch.equal(default_ids, inference_prompt(tokenizer, 3, 2))


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
        assert len(set(positions)) == 6 and all(p % 2 == 0 and p < 20 for p in positions)
        assert 1 <= len(objects) <= 2 and all(
            positions[0] in sample.header["visible"][str(o)] for o in objects
        )
    example = sampler(sample, None, np.random.default_rng(0))
    assert example.images.shape == (6, 3, 32, 32) and example.masks.shape[:2] == (6, len(objects))
    assert example.masks[0].flatten(1).any(1).all()


# 20 annotated frames; object 3 shows on few of them, so the first-frame rule matters
STAGE1_HEADER = {
    "frame_indices": list(range(0, 80, 4)),
    "visible": {"1": list(range(0, 8)), "2": list(range(10, 20)), "3": [5, 6, 15]},
}


def official_stage1_clip(header, num_frames, stride, max_objects, shuffle, rnd):
    """SAM 2's loader as SeC's stage 1 runs it, transcribed from the official code.

    vos_raw_dataset.py:285-293: the frame ids of the extracted JPEGs (every annotated frame,
    ids 0, 4, 8, ...) sorted, `[::sample_rate]`, shuffled when `shuffle`; 305-312 keeps the
    annotated ones (all here). vos_sampler.py:44-77: a random window of `num_frames`, redrawn
    until its first frame shows an object, then up to `max_num_objects` of those at random.
    """
    frames = list(range(len(header["frame_indices"])))[::stride]
    if shuffle:
        rnd.shuffle(frames)
    for _ in range(1000):
        start = rnd.randrange(0, len(frames) - num_frames + 1)
        clip = frames[start : start + num_frames]
        shown = [int(o) for o, v in header["visible"].items() if clip[0] in v]
        if shown:
            break
    return clip, sorted(rnd.sample(shown, min(len(shown), max_objects)))


def _distribution(values) -> dict:
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return {k: c / len(values) for k, c in counts.items()}


def _total_variation(a: dict, b: dict) -> float:
    """Total variation distance of two distributions. Two runs of the same rule, 3000-4000 draws
    each over up to ~25 values, land about 0.04 apart by chance (hence the tests' 0.08); the
    rules they tell apart differ by far more (ordered clips vs shuffled ones: 1.0)."""
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


@pytest.mark.parametrize("shuffle", [True, False])
def test_stage1_clips_are_drawn_as_the_official_loader_draws_them(shuffle):
    cfg = Stage1Config(num_frames=6, stride=2, max_objects=1, shuffle=shuffle)
    sampler, rnd, draws = Stage1Sampler(cfg, sam_image_size=32), random.Random(0), 3000
    ours = [sampler.pick(STAGE1_HEADER, np.random.default_rng(seed)) for seed in range(draws)]
    official = [official_stage1_clip(STAGE1_HEADER, 6, 2, 1, shuffle, rnd) for _ in range(draws)]
    in_order = [clip == sorted(clip) for clip, _ in ours]
    assert all(in_order) != shuffle  # shuffled: random order; not: time order
    if not shuffle:  # the same windows of the same pool
        assert {tuple(c) for c, _ in ours} == {tuple(c) for c, _ in official}
    for name, key in [
        ("first frame and object", lambda clip, objects: (clip[0], *objects)),
        ("frames in the clip", lambda clip, objects: frozenset(clip)),
        ("third frame", lambda clip, objects: clip[2]),
        ("in time order", lambda clip, objects: clip == sorted(clip)),
    ]:
        if name == "frames in the clip" and shuffle:  # 210 subsets: compare the frame counts
            ours_d = _distribution([p for clip, _ in ours for p in clip])
            official_d = _distribution([p for clip, _ in official for p in clip])
        else:
            ours_d = _distribution([key(*o) for o in ours])
            official_d = _distribution([key(*o) for o in official])
        assert _total_variation(ours_d, official_d) < 0.08, name


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
