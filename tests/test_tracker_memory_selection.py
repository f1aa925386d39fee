"""memory_selection="reliable": SeC's released predictor reads each object's recent reliable frames.

The reference below is the official rule transcribed line by line from OpenIXCLab/SeC
`inference/sam2_video_predictor.py:115-191` (`_prepare_memory_conditioned_features`), on the
official data layout (an output dict per frame with "ious" and "object_score_logits"), and the
expected memory is assembled here from the frames' stored memories, independently of the
tracker's planning code.
"""

import pytest
import torch
from transformers.models.sam2_video.modeling_sam2_video import get_1d_sine_pe

from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.tracker import Sam2Tracker
from tests.test_tracker import SIZE, box_masks, random_sam2

NUM_MASKMEM = 4


def official_plan(frame_idx, start_frame_idx, non_cond, num_maskmem, max_obj_ptrs_in_encoder, num_frames):
    """(memory [(t_pos, frame)], pointers [(t_diff, frame)], pointer window), as SeC's predictor."""
    iou_thre = 0.3
    _memory_frames = max(max_obj_ptrs_in_encoder, num_maskmem)
    max_ptrs = min(num_frames, _memory_frames)
    valid_indices = [
        i
        for i in range(frame_idx - 1, start_frame_idx, -1)
        if (non_cond[i]["ious"].max().item() > iou_thre and non_cond[i]["object_score_logits"].item() > 0)
    ][: max_ptrs - 1]
    valid_indices.sort()
    if frame_idx - 1 not in valid_indices and (frame_idx - 1) != start_frame_idx:
        valid_indices.append(frame_idx - 1)
    memory = []
    for t_pos in range(1, num_maskmem):
        t_rel = t_pos - num_maskmem
        if t_rel < -len(valid_indices):
            continue
        memory.append((t_pos, valid_indices[t_rel]))
    max_ptrs = min(num_frames, max_obj_ptrs_in_encoder)
    pointers = []
    for t_diff in range(1, max_ptrs):
        if -t_diff <= -len(valid_indices):
            break
        pointers.append((t_diff, valid_indices[-t_diff]))
    return memory, pointers, max_ptrs


class Recorder:
    """Sets each mask-decoder call's IoU predictions and object scores from a schedule (one row
    per call, one (iou, score) per object) and records the memory each frame attends to and the
    memory each frame leaves."""

    def __init__(self, sam2, tracker, schedule):
        self.schedule, self.calls, self.attended, self.memories = schedule, 0, [], []
        sam2.mask_decoder.register_forward_hook(self._decoder)
        sam2.memory_attention.register_forward_pre_hook(self._attention, with_kwargs=True)
        encode = tracker._encode_memory
        tracker._encode_memory = lambda top, out: self.memories.append(encode(top, out)) or self.memories[-1]

    def _decoder(self, module, args, output):
        low_res, ious, tokens, scores = output
        row = self.schedule[self.calls]
        self.calls += 1
        iou = torch.tensor([r[0] for r in row]).view(-1, 1, 1).expand_as(ious)
        score = torch.tensor([r[1] for r in row]).view(-1, 1, 1).expand_as(scores)
        return low_res, iou.clone(), tokens, score.clone()

    def _attention(self, module, args, kwargs):
        self.attended.append((kwargs["memory"], kwargs["memory_posision_embeddings"]))


# per tracked frame 1..11: (best IoU, object score); R = reliable, U = not
SCHEDULE = [
    (0.9, 2.0),  # 1 R
    (0.2, 2.0),  # 2 U: IoU
    (0.3, 2.0),  # 3 R: float32(0.3) exceeds the float64 0.3 the official `.item() > 0.3` meets
    (0.31, 0.1),  # 4 R
    (0.9, 0.0),  # 5 U: score must exceed 0
    (0.9, 3.0),  # 6 R
    (0.9, -1.0),  # 7 U: absent
    (0.8, 1.0),  # 8 R
    (0.1, 1.0),  # 9 U
    (0.1, 1.0),  # 10 U
    (0.7, 1.0),  # 11 R
]

NUM_FRAMES = len(SCHEDULE) + 1


def run(schedule_per_object, max_pointers, num_frames=NUM_FRAMES, objects=(0, 1)):
    """Tracks the `objects` of `box_masks` from their frame-0 boxes over `num_frames` frames with
    reliable selection; frames past a schedule's end are reliable."""
    sam2 = random_sam2(num_maskmem=NUM_MASKMEM).eval()
    sam2.config.max_object_pointers_in_encoder = max_pointers
    tracker = Sam2Tracker(sam2, memory_selection="reliable")
    n = len(schedule_per_object)
    padded = [s + [(0.9, 1.0)] * (num_frames - 1 - len(s)) for s in schedule_per_object]
    rows = [[(1.0, 1.0)] * n] + [list(r) for r in zip(*padded)]  # the prompt's call first
    recorder = Recorder(sam2, tracker, rows)
    torch.manual_seed(1)
    video = torch.randn(num_frames, 3, SIZE, SIZE)
    prompt = box_masks(1)[0][list(objects[:n])]
    with torch.no_grad():
        feats = tracker.encode_frames(video)
        state = tracker.init_state(num_objects=n, num_frames=num_frames)
        outs = [tracker.track_frame(state, feats.frame(0), 0, mask_prompt=prompt)]
        outs += [tracker.track_frame(state, feats.frame(t), t) for t in range(1, num_frames)]
    return sam2, recorder, outs, state


@pytest.mark.parametrize("max_pointers", [16, 4])
def test_memory_and_pointers_follow_the_official_rule(max_pointers):
    sam2, recorder, outs, state = run([SCHEDULE], max_pointers)
    num_frames = NUM_FRAMES
    non_cond = {
        t: {"ious": outs[t].ious, "object_score_logits": outs[t].object_score_logits}
        for t in range(1, num_frames)
    }
    tpos = sam2.memory_temporal_positional_encoding
    mem = recorder.memories  # frame t's memory is the t-th encoded
    hidden, mem_dim = mem[0].object_pointer.shape[-1], sam2.mem_dim
    for frame_idx in range(1, num_frames):
        memory_plan, pointer_plan, max_ptrs = official_plan(
            frame_idx, 0, non_cond, NUM_MASKMEM, max_pointers, num_frames
        )
        features = [mem[0].features] + [mem[t].features for _, t in memory_plan]
        positions = [mem[0].pos + tpos[NUM_MASKMEM - 1]]
        positions += [mem[t].pos + tpos[NUM_MASKMEM - t_pos - 1] for t_pos, t in memory_plan]
        dists = [frame_idx] + [d for d, _ in pointer_plan]
        ptrs = torch.stack([mem[0].object_pointer] + [mem[t].object_pointer for _, t in pointer_plan])
        ptr_pos = sam2.temporal_positional_encoding_projection_layer(
            get_1d_sine_pe(torch.tensor(dists, dtype=torch.float32) / (max_ptrs - 1), dim=hidden)
        )
        ptr_pos = ptr_pos.unsqueeze(1).expand(-1, 1, mem_dim).repeat_interleave(hidden // mem_dim, dim=0)
        ptrs = ptrs.reshape(-1, 1, hidden // mem_dim, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        memory, memory_pos = recorder.attended[frame_idx - 1]
        torch.testing.assert_close(memory, torch.cat(features + [ptrs]))
        torch.testing.assert_close(memory_pos, torch.cat(positions + [ptr_pos]))
    # the state keeps only what a later frame can still read
    assert len(state.non_cond) <= min(num_frames, max(max_pointers, NUM_MASKMEM))


def test_unreliable_frames_are_skipped_and_slots_go_by_rank():
    """Frame 12 reads reliable 6, 8, 11 (slots 3, 2, 1) where SAM 2 reads 9, 10, 11; its
    pointers come from 11, 8, 6, 4, 3 at distances 1-5 (frame 1, the oldest listed, gives none)."""
    _, recorder, outs, _ = run([SCHEDULE], max_pointers=16, num_frames=NUM_FRAMES + 1)
    mem = recorder.memories
    memory, _ = recorder.attended[-1]
    hw = mem[0].features.shape[0]
    expected = torch.cat([mem[t].features for t in (0, 6, 8, 11)])
    torch.testing.assert_close(memory[: 4 * hw], expected)
    pointer_tokens = memory.shape[0] - 4 * hw
    assert pointer_tokens == (1 + 5) * (mem[0].object_pointer.shape[-1] // 64)  # cond + 5


def test_previous_frame_is_read_even_when_unreliable():
    """Frame 4 reads reliable 1 and the previous frame 3 (unreliable), not 2; pointers: 3 only."""
    _, recorder, _, _ = run([[(0.9, 2.0), (0.2, 2.0), (0.9, -1.0)]], max_pointers=16, num_frames=5)
    mem = recorder.memories
    memory, _ = recorder.attended[-1]
    hw, tokens = mem[0].features.shape[0], mem[0].object_pointer.shape[-1] // 64
    assert memory.shape[0] == 3 * hw + 2 * tokens
    torch.testing.assert_close(memory[: 3 * hw], torch.cat([mem[t].features for t in (0, 1, 3)]))


def test_objects_with_different_reliable_frames_match_separate_runs():
    other = [(0.9, 1.0) if t % 3 else (0.1, 1.0) for t in range(len(SCHEDULE))]
    _, _, together, _ = run([SCHEDULE, other], max_pointers=16)
    for obj, schedule in enumerate([SCHEDULE, other]):
        _, _, alone, _ = run([schedule], max_pointers=16, objects=(obj,))
        for t in range(1, len(together)):
            torch.testing.assert_close(
                together[t].mask_logits[obj : obj + 1], alone[t].mask_logits, atol=1e-5, rtol=1e-5
            )


def test_unknown_selection_is_an_error():
    with pytest.raises(ValueError, match="memory_selection must be"):
        Sam2Tracker(random_sam2(), memory_selection="latest")


def test_training_clips_read_reliable_frames_when_the_recipe_says_so():
    """`model.memory_selection: reliable` reaches the training tracker: in a clip whose GT object
    leaves on frames 2-4 (unreliable inputs), tracked frame 5 reads frames 1 and 4, not 2-4."""
    assert build_sec_model(ModelConfig(mode="stage1")).tracker.memory_selection == "recent"
    model = build_sec_model(ModelConfig(mode="stage1", sam2="toy", memory_selection="reliable"))
    assert model.tracker.memory_selection == "reliable"
    sam2 = random_sam2(num_maskmem=NUM_MASKMEM).train()
    tracker = Sam2Tracker(sam2, memory_selection=model.tracker.memory_selection)
    recorder = Recorder(sam2, tracker, [[(0.9, 1.0)]] * 6)
    masks = box_masks(6)[:, :1].clone()
    masks[2:5] = False
    outputs = tracker.track_clip(tracker.encode_frames(torch.randn(6, 3, SIZE, SIZE)), masks, {5})
    memory, _ = recorder.attended[-1]
    hw = recorder.memories[0].features.shape[0]
    expected = torch.cat([recorder.memories[t].features for t in (0, 1, 4)])
    torch.testing.assert_close(memory[: 3 * hw], expected)
    outputs[5].high_res_multimasks.sigmoid().mean().backward()
    assert sam2.memory_attention.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
