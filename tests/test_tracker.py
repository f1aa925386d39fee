"""Sam2Tracker: parity with transformers' own SAM 2 video inference, gradients, concept fusion."""

import pytest
import torch
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from sec_train.model.sam2 import toy_sam2_config
from sec_train.model.token_attn import build_token_attn
from sec_train.model.tracker import FrameFeatures, Sam2Tracker

SIZE = 128
NUM_FRAMES = 7


def random_sam2(seed: int = 0, num_maskmem: int = 4, object_bias: float = 0.0) -> Sam2VideoModel:
    """A toy SAM 2 whose predictions depend on the input and differ between objects.

    SAM 2's small init (std 0.02) makes masks and object scores nearly constant, so weight
    matrices are scaled up and parameters SAM 2 initialises to zero get random values.
    `object_bias` shifts the object-score logits, to see tracked objects present and absent.
    """
    torch.manual_seed(seed)
    sam2 = Sam2VideoModel(toy_sam2_config(num_maskmem))
    with torch.no_grad():
        for p in sam2.parameters():
            if p.dim() >= 2:
                p.mul_(3.0)
            if p.dim() > 0 and not p.abs().sum():
                p.normal_(0, 0.2)
        sam2.mask_decoder.pred_obj_score_head.proj_out.bias.add_(object_bias)
    return sam2


def box_masks(num_frames: int) -> torch.Tensor:
    """Two objects per frame as boxes that drift, [T, 2, S, S] bool."""
    masks = torch.zeros(num_frames, 2, SIZE, SIZE, dtype=torch.bool)
    for t in range(num_frames):
        masks[t, 0, 20 + 2 * t : 70 + 2 * t, 30:80] = True
        masks[t, 1, 60:110, 10 + 3 * t : 50 + 3 * t] = True
    return masks


def transformers_video_inference(
    sam2: Sam2VideoModel, video: torch.Tensor, feats: FrameFeatures, prompt: torch.Tensor
) -> list[torch.Tensor]:
    """transformers' own propagation from a mask prompt per object on frame 0.

    The session's feature cache is filled with the tracker's image features: transformers
    encodes one frame per call, and a batched encoder call differs in the last float bits,
    which the bfloat16 memory bank would amplify past the tolerance.
    """
    session = Sam2VideoInferenceSession(
        video=video,
        video_height=SIZE,
        video_width=SIZE,
        dtype=torch.float32,
        max_vision_features_cache_size=len(video),
    )
    for t in range(len(video)):
        frame = feats.frame(t)
        session.cache.cache_vision_features(
            t, {"vision_feats": frame.levels, "vision_pos_embeds": [frame.top_pos] * 3}
        )
    for obj_id in range(prompt.shape[0]):
        obj_idx = session.obj_id_to_idx(obj_id)
        session.add_mask_inputs(obj_idx, 0, prompt[obj_id][None, None].float())
        session.obj_with_new_inputs.append(obj_id)
    return [out.pred_masks for out in sam2.propagate_in_video_iterator(session, start_frame_idx=0)]


@pytest.mark.parametrize(
    ("num_maskmem", "max_pointers", "object_bias"), [(4, 16, -0.05), (7, 16, -0.106), (3, 3, -0.5922)]
)
def test_matches_transformers_video_inference(num_maskmem, max_pointers, object_bias):
    sam2 = random_sam2(num_maskmem=num_maskmem, object_bias=object_bias).eval()
    sam2.config.max_object_pointers_in_encoder = max_pointers
    video = torch.randn(NUM_FRAMES, 3, SIZE, SIZE)
    prompt = box_masks(1)[0]
    # transformers stores memories in bfloat16 and points from the best multimask token.
    tracker = Sam2Tracker(sam2, memory_dtype=torch.bfloat16, mask_pointer_multimask=True)
    with torch.no_grad():
        feats = tracker.encode_frames(video)
        state = tracker.init_state(num_objects=2, num_frames=NUM_FRAMES)
        outs = [tracker.track_frame(state, feats.frame(0), 0, mask_prompt=prompt)]
        outs += [tracker.track_frame(state, feats.frame(t), t) for t in range(1, NUM_FRAMES)]
    expected = transformers_video_inference(sam2, video, feats, prompt)

    assert len(expected) == NUM_FRAMES
    for t in range(NUM_FRAMES):
        got = outs[t].mask_logits
        assert got.shape == (2, 1, SIZE // 4, SIZE // 4)
        torch.testing.assert_close(got, expected[t].reshape(got.shape), atol=1e-5, rtol=1e-5)
    # The comparison must see tracked objects both present and absent.
    present = torch.stack([out.object_score_logits > 0 for out in outs[1:]])
    assert present.any() and not present.all()
    # Frames out of reach of the memory and pointer windows were dropped.
    assert min(state.non_cond) >= NUM_FRAMES - max(num_maskmem, max_pointers)


def test_track_clip_backpropagates_to_memory_attention():
    sam2 = random_sam2().train()
    tracker = Sam2Tracker(sam2)
    images = torch.randn(5, 3, SIZE, SIZE)
    outputs = tracker.track_clip(tracker.encode_frames(images), box_masks(5), tracked_frames={2, 4})
    assert [o.from_mask for o in outputs] == [True, True, False, True, False]
    assert outputs[4].high_res_multimasks.shape == (2, 3, SIZE, SIZE)
    assert outputs[4].ious.shape == (2, 3)
    loss = sum(outputs[t].high_res_multimasks.sigmoid().mean() + outputs[t].ious.sum() for t in (2, 4))
    loss.backward()
    grads = [p.grad for p in sam2.memory_attention.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert sam2.memory_temporal_positional_encoding.grad.abs().sum() > 0


def test_concept_fusion_averages_memory_and_concept_features():
    sam2 = random_sam2().eval()
    token_attn = build_token_attn(sam2)
    with torch.no_grad():
        for p in token_attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    tracker = Sam2Tracker(sam2, token_attn)
    feats = tracker.encode_frames(torch.randn(2, 3, SIZE, SIZE))
    concept = torch.randn(2, 256)

    def second_frame(**kwargs):
        state = tracker.init_state(num_objects=2, num_frames=2)
        with torch.no_grad():
            tracker.track_frame(state, feats.frame(0), 0, mask_prompt=box_masks(1)[0])
            return tracker.track_frame(state, feats.frame(1), 1, **kwargs).multimask_logits

    memory_only = second_frame()
    fused = second_frame(concept=concept)
    concept_only = second_frame(concept=concept, use_memory=False)
    assert not torch.allclose(fused, memory_only, atol=1e-3)
    assert not torch.allclose(fused, concept_only, atol=1e-3)
    # Concept-only mode never reads memory: a fresh state without a prompt gives the same masks.
    fresh = tracker.init_state(num_objects=2, num_frames=2)
    with torch.no_grad():
        alone = tracker.track_frame(
            fresh, feats.frame(1), 1, concept=concept, use_memory=False
        ).multimask_logits
    torch.testing.assert_close(alone, concept_only)
    # Objects are independent: object 1's concept does not change object 0's masks.
    other = concept.clone()
    other[1] = torch.randn(256)
    changed = second_frame(concept=other)
    torch.testing.assert_close(changed[0], fused[0])


def test_tracking_without_prompt_is_a_clear_error():
    tracker = Sam2Tracker(random_sam2())
    feats = tracker.encode_frames(torch.randn(1, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="mask_prompt"):
        tracker.track_frame(tracker.init_state(1), feats.frame(0), 0)


def test_one_frame_per_object_matches_separate_calls():
    sam2 = random_sam2().eval()
    tracker = Sam2Tracker(sam2, build_token_attn(sam2))
    feats = tracker.encode_frames(torch.randn(3, 3, SIZE, SIZE))
    concept = torch.randn(3, 256)
    with torch.no_grad():
        batched = tracker.track_frame(tracker.init_state(3), feats, 0, concept=concept, use_memory=False)
        for k in range(3):
            alone = tracker.track_frame(
                tracker.init_state(1), feats.frame(k), 0, concept=concept[k : k + 1], use_memory=False
            )
            torch.testing.assert_close(batched.high_res_multimasks[k : k + 1], alone.high_res_multimasks)
            torch.testing.assert_close(batched.ious[k : k + 1], alone.ious)
    with pytest.raises(ValueError, match="3 feature frames for 2 objects"):
        tracker.track_frame(tracker.init_state(2), feats, 0, concept=concept[:2], use_memory=False)


def test_pointer_of_a_given_mask_follows_the_chosen_output_token():
    """Meta's SAM 2 points from the single-mask token; transformers from the best of three."""
    sam2 = random_sam2(object_bias=1.0).eval()  # the decoder sees the object: its pointer is used
    feats = Sam2Tracker(sam2).encode_frames(torch.randn(1, 3, SIZE, SIZE))
    levels = [
        x.permute(1, 2, 0).reshape(1, -1, *s) for x, s in zip(feats.levels, sam2.backbone_feature_sizes)
    ]
    mask = box_masks(1)[0, :1]
    pointers = []
    for multimask in (False, True):
        tracker = Sam2Tracker(sam2, mask_pointer_multimask=multimask)
        with torch.no_grad():
            got = tracker.track_frame(tracker.init_state(1), feats, 0, mask_prompt=mask).object_pointer
            expected = sam2._single_frame_forward(
                input_masks=sam2.mask_downsample(mask[None].float()),
                image_embeddings=levels,
                multimask_output=multimask,
            ).object_pointer
        torch.testing.assert_close(got, expected.reshape(got.shape))
        pointers.append(got)
    assert not torch.allclose(pointers[0], pointers[1])


def test_frame_encoding_equals_transformers_and_leaves_the_encoder_as_it_was():
    """`encode_frames` skips transformers' unused Hiera attention weights, applies the MLPs' GELU in
    place and reuses the neck's position encodings: the same features and encodings bit for bit,
    on a first call and on a later one with another batch size; with autograd on, gradients reach
    the MLPs; afterwards every module runs its own forward again."""
    sam2 = random_sam2()
    attns = [m for m in sam2.vision_encoder.modules() if type(m).__name__ == "Sam2MultiScaleAttention"]
    hooked = attns[0].forward  # an instance-level forward, as hook libraries set, must survive
    attns[0].forward = hooked
    frames = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    tracker = Sam2Tracker(sam2)
    for batch in (frames[:2], frames, frames[:2]):
        with torch.no_grad():
            expected = sam2.get_image_features(batch, return_dict=True)
            got = tracker.encode_frames(batch)
        assert len(got.levels) == len(expected.fpn_hidden_states) == 3
        for a, b in zip(got.levels, expected.fpn_hidden_states):
            assert torch.equal(a, b)
        assert torch.equal(got.top_pos, expected.fpn_position_encoding[-1][:, :1])
    mlps = [m for m in sam2.vision_encoder.modules() if type(m).__name__ == "Sam2FeedForward"]
    tracker.encode_frames(frames[:1]).levels[-1].sum().backward()
    assert all(m.proj_in.weight.grad.abs().sum() > 0 for m in mlps)
    assert all("forward" not in m.__dict__ for m in mlps)
    assert attns[0].__dict__["forward"] is hooked
    assert all("forward" not in m.__dict__ for m in attns[1:])
    neck_encoding = sam2.vision_encoder.neck.position_encoding
    assert "forward" not in neck_encoding.__dict__
    assert len(tracker._position_encodings._encodings) == 4  # one per neck level, whatever the batch
