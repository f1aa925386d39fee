"""Differentiable SAM 2 tracking over one video, batched over its objects.

`Sam2Tracker` mirrors transformers' `Sam2VideoModel` video inference
(`_run_single_frame_inference`, `_prepare_memory_conditioned_features`, `_use_mask_as_output`,
`_encode_new_memory`) with the same submodules, but runs all N objects of a frame in one batch,
keeps the autograd graph, and adds SeC's concept conditioning through `token_attn`. Where
transformers departs from Meta's SAM 2 training code (bfloat16 memories, the pointer token of a given
mask) the tracker follows Meta by default and transformers on request (see `Sam2Tracker`).

Usage, frame by frame (inference) or per clip (training, `track_clip`):

    tracker = Sam2Tracker(sam2, token_attn)
    feats = tracker.encode_frames(images)            # [T, 3, S, S] normalised, one encoder call
    state = tracker.init_state(num_objects=N, num_frames=T)
    out0 = tracker.track_frame(state, feats.frame(0), 0, mask_prompt=gt0)   # [N, S, S]
    out1 = tracker.track_frame(state, feats.frame(1), 1, concept=concept)   # [N, 256]

Frames are tracked in increasing `frame_idx` order; state no later frame can read is dropped as
tracking moves on.

Which earlier frames a frame reads is `memory_selection`: "recent" is plain SAM 2 (the last
`num_maskmem - 1` frames, slots and pointer distances by frame offset); "reliable" is the released
SeC predictor's override of `_prepare_memory_conditioned_features`
(OpenIXCLab/SeC `inference/sam2_video_predictor.py:70-247`, see `Sam2Tracker`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import NO_OBJ_SCORE, get_1d_sine_pe

from sec_train.model.config import MemorySelection
from sec_train.model.hiera import PositionEncodingCache, lean_image_encoder
from sec_train.model.token_attn import concept_condition

# Mask-as-output logits: +10 inside, -10 outside (sigmoid(-10) = 4.5e-5), as SAM 2 does.
MASK_OUT_SCALE, MASK_OUT_BIAS = 20.0, -10.0

# SeC's predictor: a frame is reliable when its best predicted IoU exceeds this (`iou_thre`) and
# its object-score logit exceeds 0.
RELIABLE_IOU = 0.3


@dataclass
class FrameFeatures:
    """Image-encoder outputs of T frames in SAM 2's flattened (HW, T, C) layout.

    `levels[0]` and `levels[1]` are the high-resolution maps already projected by the mask
    decoder's `conv_s0`/`conv_s1`; `levels[-1]` is the top-level map the memory attends from.
    `top_pos` is the top level's position encoding and `image_pe` the mask decoder's dense
    position encoding; both are the same for every frame and computed once.
    """

    levels: list[torch.Tensor]
    top_pos: torch.Tensor  # [HW, 1, C]
    image_pe: torch.Tensor  # [1, C, h, w]

    @property
    def num_frames(self) -> int:
        return self.levels[-1].shape[1]

    def frames(self, start: int, stop: int) -> FrameFeatures:
        """The features of frames [start, stop)."""
        return FrameFeatures([x[:, start:stop] for x in self.levels], self.top_pos, self.image_pe)

    def frame(self, t: int) -> FrameFeatures:
        """The features of frame t alone."""
        return self.frames(t, t + 1)

    def select(self, index: torch.Tensor) -> FrameFeatures:
        """The features of frames `index` (long [N]), in that order: one frame per object."""
        return FrameFeatures([x[:, index] for x in self.levels], self.top_pos, self.image_pe)


@dataclass
class FrameMemory:
    """What one tracked frame leaves in the memory bank for N objects."""

    features: torch.Tensor  # [HW, N, 64] memory-encoder features
    pos: torch.Tensor  # [HW, N, 64] their spatial position encoding
    object_pointer: torch.Tensor  # [N, C]
    reliable: list[bool] | None = None  # per object; kept under memory_selection="reliable"


@dataclass
class _MemoryPlan:
    """The non-conditioning frames one object reads: `(temporal slot, frame)` pairs for the
    memory bank (slot k takes `memory_temporal_positional_encoding[k - 1]`) and `(distance,
    frame)` pairs for object pointers."""

    memory: list[tuple[int, int]]
    pointers: list[tuple[int, int]]


@dataclass
class TrackState:
    """Per-video tracking state: conditioning frames are kept, the others roll off.

    `num_frames` is the clip length when known (it bounds the object-pointer window as in SAM 2's
    offline mode), None when streaming. `memory_selection` is which earlier frames tracking reads
    (see `Sam2Tracker`).
    """

    num_objects: int
    num_frames: int | None = None
    memory_selection: MemorySelection = "recent"
    cond: dict[int, FrameMemory] = field(default_factory=dict)
    non_cond: dict[int, FrameMemory] = field(default_factory=dict)


@dataclass
class FrameOutput:
    """Predictions for one frame and N objects; M = 3 when multimask output is on, else 1.

    On a frame that takes a mask (prompt or input) the masks are that mask as +-10 logits, the
    IoU prediction is 1 and the object score +-10, as in SAM 2.
    """

    multimask_logits: torch.Tensor  # [N, M, h, w] low-res (S/4) logits
    high_res_multimasks: torch.Tensor  # [N, M, S, S]
    ious: torch.Tensor  # [N, M] predicted IoU per mask
    object_score_logits: torch.Tensor  # [N, 1]
    mask_logits: torch.Tensor  # [N, 1, h, w] the selected mask (highest predicted IoU)
    high_res_masks: torch.Tensor  # [N, 1, S, S]
    object_pointer: torch.Tensor  # [N, C]
    from_mask: bool = False  # True where the frame's output is a given mask

    @classmethod
    def cat(cls, outputs: list[FrameOutput], order: torch.Tensor | None = None) -> FrameOutput:
        """The objects of `outputs` one after another, then taken in `order` (long [N]) if given."""
        tensors = {
            f.name: torch.cat([getattr(o, f.name) for o in outputs])
            for f in fields(cls)
            if f.name != "from_mask"
        }
        return cls(**{name: t if order is None else t[order] for name, t in tensors.items()})


def _check_selection(memory_selection: str) -> None:
    if memory_selection not in ("recent", "reliable"):
        raise ValueError(f"memory_selection must be 'recent' or 'reliable', got {memory_selection!r}")


class Sam2Tracker:
    """SAM 2 tracking with memory bank, object pointers and optional concept fusion.

    A plain object, not an `nn.Module`: it holds references to `sam2` and `token_attn`, whose
    parameters belong to the model that owns them. Train/eval behaviour follows `sam2.training`.

    Args:
        sam2 (`Sam2VideoModel`): provides every SAM 2 submodule and the config.
        token_attn (`nn.Module`, *optional*): SeC's concept attention; needed for `concept=`.
        memory_dtype (`torch.dtype`, *optional*):
            dtype the memory bank stores its features in. SAM 2's video predictor stores
            bfloat16 to save memory; None keeps the compute dtype (training).
        mask_pointer_multimask (`bool`, *optional*, defaults to `False`):
            Which output token makes the object pointer of a given mask. Meta's SAM 2 (which the
            SAM 2.1 and SeC weights were trained with) uses the single-mask token; transformers'
            video inference uses the best of the 3 multimask tokens (True).
        memory_selection (`str`, *optional*, defaults to `"recent"`):
            The states' default (`init_state` may choose per state): which earlier
            non-conditioning frames a tracked frame reads. "recent": SAM 2's last `num_maskmem - 1`
            frames, temporal slot and pointer distance = frame offset (SAM 2's and SeC's trainers,
            transformers). "reliable": SeC's released predictor, per object: the most recent
            frames whose best predicted IoU > 0.3 and object-score logit > 0 (at most
            `max(max_object_pointers_in_encoder, num_maskmem) - 1`, bounded by the clip length),
            plus the previous frame always; the last `num_maskmem - 1` of that list fill the
            memory slots by rank (the latest takes slot 1), and the object pointers come from the
            same list, distance = rank, at most `max_object_pointers_in_encoder - 1` and never the
            list's oldest entry (the official loop stops one short).
    """

    def __init__(
        self,
        sam2: Sam2VideoModel,
        token_attn: nn.Module | None = None,
        memory_dtype: torch.dtype | None = None,
        mask_pointer_multimask: bool = False,
        memory_selection: MemorySelection = "recent",
    ):
        _check_selection(memory_selection)
        self.sam2 = sam2
        self.token_attn = token_attn
        self.memory_dtype = memory_dtype
        self.mask_pointer_multimask = mask_pointer_multimask
        self.memory_selection = memory_selection
        self.config = sam2.config
        self._position_encodings = PositionEncodingCache()

    @property
    def image_size(self) -> int:
        return self.sam2.image_size

    def encode_frames(self, images: torch.Tensor) -> FrameFeatures:
        """Runs the image encoder once over T normalised frames [T, 3, S, S]."""
        # the same features with less work (see `hiera`)
        with lean_image_encoder(self.sam2.vision_encoder, self._position_encodings):
            out = self.sam2.get_image_features(images, return_dict=True)
        return FrameFeatures(
            levels=list(out.fpn_hidden_states),
            top_pos=out.fpn_position_encoding[-1][:, :1],
            image_pe=self.sam2.get_image_wide_positional_embeddings().to(images.dtype),
        )

    def init_state(
        self, num_objects: int, num_frames: int | None = None, memory_selection: MemorySelection | None = None
    ) -> TrackState:
        """An empty tracking state for `num_objects` objects of a clip of `num_frames` frames,
        reading memory by `memory_selection` (None: the tracker's)."""
        selection = memory_selection or self.memory_selection
        _check_selection(selection)
        return TrackState(num_objects=num_objects, num_frames=num_frames, memory_selection=selection)

    def track_frame(
        self,
        state: TrackState,
        features: FrameFeatures,
        frame_idx: int,
        *,
        mask_prompt: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        concept: torch.Tensor | None = None,
        use_memory: bool = True,
        update_memory: bool = True,
    ) -> FrameOutput:
        """Segments the N objects on one frame and adds the frame to the memory bank.

        Args:
            state (`TrackState`): updated in place.
            features (`FrameFeatures`):
                This frame's features (`FrameFeatures.frame`), shared by the N objects; or N
                frames, one per object (e.g. the target frames of N samples in concept-only mode).
            frame_idx (`int`): the frame's position in the video.
            mask_prompt (`torch.Tensor` of shape `(N, S, S)`, *optional*):
                A mask that conditions tracking (kept in memory for the whole video).
            mask_input (`torch.Tensor` of shape `(N, S, S)`, *optional*):
                A mask taken as this frame's output, remembered like a tracked frame (stage 1
                feeds GT masks on untracked frames so the memory stays clean).
            concept (`torch.Tensor` of shape `(N, 256)`, *optional*):
                SeC's concept embedding; the mask decoder sees the average of memory- and
                concept-conditioned features, or the concept-conditioned ones alone when
                `use_memory` is False.
            use_memory (`bool`, *optional*, defaults to `True`):
                False with a concept: SeC's concept-only mode, the memory bank is not read.
            update_memory (`bool`, *optional*, defaults to `True`):
                Whether to encode this frame into the memory bank.

        Returns:
            `FrameOutput`
        """
        if mask_prompt is not None and mask_input is not None:
            raise ValueError(f"frame {frame_idx}: give mask_prompt or mask_input, not both")
        if not use_memory and concept is None:
            raise ValueError(f"frame {frame_idx}: use_memory=False needs a concept embedding")
        n = state.num_objects
        if features.num_frames not in (1, n):
            raise ValueError(f"frame {frame_idx}: {features.num_frames} feature frames for {n} objects")
        top = features.levels[-1].expand(-1, n, -1)
        high_res = [self._to_map(x, level) for level, x in enumerate(features.levels[:-1])]
        mask = mask_prompt if mask_prompt is not None else mask_input
        if mask is not None:
            out = self._mask_as_output(self._to_map(top), high_res, features.image_pe, mask)
        else:
            pix_feat = self._condition(state, frame_idx, top, features.top_pos, concept, use_memory)
            out = self._sam_heads(pix_feat, high_res, features.image_pe, self._tracking_multimask())
        if update_memory and self.sam2.num_maskmem > 0:
            memory = self._encode_memory(top, out)
            if state.memory_selection == "reliable":
                memory.reliable = self._reliable(out)
            bank = state.cond if mask_prompt is not None else state.non_cond
            bank[frame_idx] = memory
            self._forget(state, frame_idx)
        return out

    def track_clip(
        self,
        features: FrameFeatures,
        gt_masks: torch.Tensor,
        tracked_frames: Collection[int],
        *,
        concept: torch.Tensor | None = None,
        use_memory: bool = True,
    ) -> list[FrameOutput]:
        """Tracks N objects over a clip for training.

        Frame 0 takes its GT mask as a prompt unless it is tracked; frames in `tracked_frames`
        are predicted (from memory, with the concept if given); every other frame takes its GT
        mask as input, so the memory bank holds clean masks.

        Args:
            features (`FrameFeatures`): the clip's T frames.
            gt_masks (`torch.Tensor` of shape `(T, N, S, S)`): bool or float GT masks.
            tracked_frames (`Collection[int]`): frame indices the model predicts.
            concept (`torch.Tensor` of shape `(N, 256)`, *optional*): fused on tracked frames.
            use_memory (`bool`, *optional*, defaults to `True`): False for concept-only mode.

        Returns:
            `list[FrameOutput]`: one per frame, in order.
        """
        num_frames = features.num_frames
        if gt_masks.shape[0] != num_frames:
            raise ValueError(f"gt_masks has {gt_masks.shape[0]} frames, features {num_frames}")
        state = self.init_state(gt_masks.shape[1], num_frames)
        outputs = []
        for t in range(num_frames):
            frame = features.frame(t)
            remember = t < num_frames - 1  # the last frame's memory would never be read
            if t in tracked_frames:
                out = self.track_frame(
                    state, frame, t, concept=concept, use_memory=use_memory, update_memory=remember
                )
            elif t == 0:
                out = self.track_frame(state, frame, t, mask_prompt=gt_masks[t], update_memory=remember)
            else:
                out = self.track_frame(state, frame, t, mask_input=gt_masks[t], update_memory=remember)
            outputs.append(out)
        return outputs

    # --- feature conditioning -------------------------------------------------------------

    def _condition(
        self,
        state: TrackState,
        frame_idx: int,
        top: torch.Tensor,
        top_pos: torch.Tensor,
        concept: torch.Tensor | None,
        use_memory: bool,
    ) -> torch.Tensor:
        """Top-level features [HW, N, C] -> the mask decoder's input [N, C, H, W]."""
        maps = []
        if use_memory:
            maps.append(self._memory_conditioned(state, frame_idx, top, top_pos))
        if concept is not None:
            if self.token_attn is None:
                raise ValueError("a concept embedding needs the tracker to hold token_attn")
            flat = concept_condition(self.token_attn, top, top_pos, concept)
            maps.append(self._to_map(flat.transpose(0, 1)))
        return maps[0] if len(maps) == 1 else (maps[0] + maps[1]) / 2

    def _memory_conditioned(
        self, state: TrackState, frame_idx: int, top: torch.Tensor, top_pos: torch.Tensor
    ) -> torch.Tensor:
        """Cross-attends the frame to the memory bank and object pointers (SAM 2's rule), each
        object reading the frames `memory_selection` picks for it."""
        if self.sam2.num_maskmem == 0:
            return self._to_map(top)
        if not state.cond:
            raise ValueError(
                f"frame {frame_idx}: tracking from memory needs a mask_prompt on an earlier frame"
            )
        if state.memory_selection == "recent":
            return self._attend(state, frame_idx, top, top_pos, self._recent_plan(state, frame_idx), None)
        # Objects whose reliable frames differ read different memories: one attention call per plan.
        groups: dict[tuple, tuple[_MemoryPlan, list[int]]] = {}
        for n in range(state.num_objects):
            plan = self._reliable_plan(state, frame_idx, n)
            groups.setdefault((tuple(plan.memory), tuple(plan.pointers)), (plan, []))[1].append(n)
        if len(groups) == 1:
            ((plan, _),) = groups.values()
            return self._attend(state, frame_idx, top, top_pos, plan, None)
        out = top.new_empty(state.num_objects, top.shape[-1], *self.sam2.backbone_feature_sizes[-1])
        for plan, objects in groups.values():
            out[objects] = self._attend(state, frame_idx, top[:, objects], top_pos, plan, objects)
        return out

    def _attend(
        self,
        state: TrackState,
        frame_idx: int,
        top: torch.Tensor,
        top_pos: torch.Tensor,
        plan: _MemoryPlan,
        objects: list[int] | None,
    ) -> torch.Tensor:
        """Memory attention of `objects` (None: all) over the conditioning frames and `plan`."""
        memory, memory_pos = self._spatial_memory(state, frame_idx, plan, objects)
        pointers, pointer_pos = self._object_pointers(state, frame_idx, plan, objects)
        num_pointer_tokens = pointers.shape[0]
        memory = torch.cat(memory + [pointers], dim=0).to(top.dtype)
        memory_pos = torch.cat(memory_pos + [pointer_pos], dim=0).to(top.dtype)
        out = self.sam2.memory_attention(
            current_vision_features=top,
            current_vision_position_embeddings=top_pos,
            memory=memory,
            memory_posision_embeddings=memory_pos,
            num_object_pointer_tokens=num_pointer_tokens,
        )
        return self._to_map(out[0].transpose(0, 1))

    def _max_pointers(self, state: TrackState) -> int:
        """SAM 2's pointer window: `max_object_pointers_in_encoder`, at most the clip length."""
        max_pointers = self.config.max_object_pointers_in_encoder
        return max_pointers if state.num_frames is None else min(state.num_frames, max_pointers)

    def _recent_plan(self, state: TrackState, frame_idx: int) -> _MemoryPlan:
        """SAM 2: the last `num_maskmem - 1` frames and `max_pointers - 1` pointers, by offset."""
        return _MemoryPlan(
            memory=[(offset, frame_idx - offset) for offset in range(self.sam2.num_maskmem - 1, 0, -1)],
            pointers=[
                (offset, frame_idx - offset)
                for offset in range(1, self._max_pointers(state))
                if frame_idx - offset >= 0
            ],
        )

    def _reliable_horizon(self, state: TrackState) -> int:
        """How many reliable frames SeC's predictor lists at most (`max_obj_ptrs_in_encoder - 1`
        in its code, after it raised that to `max(max_obj_ptrs_in_encoder, num_maskmem)`)."""
        horizon = max(self.config.max_object_pointers_in_encoder, self.sam2.num_maskmem)
        return (horizon if state.num_frames is None else min(state.num_frames, horizon)) - 1

    def _reliable_plan(self, state: TrackState, frame_idx: int, obj: int) -> _MemoryPlan:
        """SeC's predictor for object `obj`: recent reliable frames plus the previous one, by rank."""
        past = sorted((t for t in state.non_cond if t < frame_idx), reverse=True)
        ranked = sorted([t for t in past if state.non_cond[t].reliable[obj]][: self._reliable_horizon(state)])
        if frame_idx - 1 in state.non_cond and frame_idx - 1 not in ranked:
            ranked.append(frame_idx - 1)
        num_memory = min(self.sam2.num_maskmem - 1, len(ranked))
        num_pointers = min(self._max_pointers(state) - 1, len(ranked) - 1)
        return _MemoryPlan(
            memory=[(rank, ranked[-rank]) for rank in range(num_memory, 0, -1)],
            pointers=[(rank, ranked[-rank]) for rank in range(1, num_pointers + 1)],
        )

    def _spatial_memory(
        self, state: TrackState, frame_idx: int, plan: _MemoryPlan, objects: list[int] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Memory features and positions: selected conditioning frames, then the plan's frames."""
        selected, unselected = self.sam2._select_closest_cond_frames(
            frame_idx, state.cond, max_cond_frame_num=self.config.max_cond_frame_num
        )
        entries = [(0, m) for m in selected.values()]
        for slot, t in plan.memory:
            prev = state.non_cond.get(t, unselected.get(t))
            if prev is not None:
                entries.append((slot, prev))
        tpos = self.sam2.memory_temporal_positional_encoding
        pick = slice(None) if objects is None else objects
        # slot 0 (conditioning frames) takes the last encoding: index -1, as transformers does.
        features = [m.features[:, pick] for _, m in entries]
        positions = [m.pos[:, pick] + tpos[slot - 1] for slot, m in entries]
        return features, positions

    def _object_pointers(
        self, state: TrackState, frame_idx: int, plan: _MemoryPlan, objects: list[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Object pointers [P * C/64, n, 64] of conditioning and planned frames, with temporal PE."""
        pick = slice(None) if objects is None else objects
        n = state.num_objects if objects is None else len(objects)
        max_pointers = self._max_pointers(state)
        # At evaluation SAM 2 only uses conditioning frames from the past.
        offsets, tokens = [], []
        for t, m in state.cond.items():
            if self.sam2.training or t <= frame_idx:
                offsets.append(frame_idx - t)
                tokens.append(m.object_pointer[pick])
        for distance, t in plan.pointers:
            if t in state.non_cond:
                offsets.append(distance)
                tokens.append(state.non_cond[t].object_pointer[pick])
        if not tokens:  # only future conditioning frames, at evaluation
            empty = self.sam2.no_object_pointer.new_zeros(0, n, self.sam2.mem_dim)
            return empty, empty
        pointers = torch.stack(tokens, dim=0)  # [P, N, C]
        hidden, mem_dim = pointers.shape[-1], self.sam2.mem_dim
        if self.config.enable_temporal_pos_encoding_for_object_pointers:
            diffs = torch.tensor(offsets, device=pointers.device, dtype=torch.float32) / float(
                max_pointers - 1
            )
            sine = get_1d_sine_pe(diffs, dim=hidden).to(pointers.dtype)
            pos = (
                self.sam2.temporal_positional_encoding_projection_layer(sine)
                .unsqueeze(1)
                .expand(-1, n, mem_dim)
            )
        else:
            pos = pointers.new_zeros(len(offsets), n, mem_dim)
        splits = hidden // mem_dim
        pointers = pointers.reshape(-1, n, splits, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        return pointers, pos.repeat_interleave(splits, dim=0)

    # --- SAM heads ------------------------------------------------------------------------

    def _tracking_multimask(self) -> bool:
        """Whether a frame tracked without point prompts uses the 3-mask output (SAM 2's rule)."""
        cfg = self.config
        return (
            cfg.multimask_output_in_sam
            and cfg.multimask_output_for_tracking
            and cfg.multimask_min_pt_num <= 0 <= cfg.multimask_max_pt_num
        )

    def _sam_heads(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        image_pe: torch.Tensor,
        multimask: bool,
        mask_inputs: torch.Tensor | None = None,
    ) -> FrameOutput:
        """Prompt encoder + mask decoder on N objects (no point prompts), as SAM 2's head does."""
        sam2, n = self.sam2, pix_feat.shape[0]
        # No points: one padding point with label -1, as transformers pads.
        points = pix_feat.new_zeros(n, 1, 1, 2)
        labels = -torch.ones(n, 1, 1, dtype=torch.int32, device=pix_feat.device)
        sparse, dense = sam2.prompt_encoder(
            input_points=points, input_labels=labels, input_boxes=None, input_masks=mask_inputs
        )
        low_res, ious, tokens, object_score_logits = sam2.mask_decoder(
            image_embeddings=pix_feat,
            image_positional_embeddings=image_pe.expand(n, -1, -1, -1),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=high_res,
        )
        low_res, ious, tokens, object_score_logits = (
            low_res[:, 0],
            ious[:, 0],
            tokens[:, 0],
            object_score_logits[:, 0],
        )
        # Masks feeding memory make a hard object / no-object choice, as SAM 2 does.
        appearing = object_score_logits > 0
        # float32 logits from here, as SAM 2 keeps them for the loss under bf16 autocast
        low_res = torch.where(appearing[:, :, None, None], low_res, NO_OBJ_SCORE).float()
        high_res_multi = self._upsample(low_res)
        best = ious.argmax(dim=-1) if multimask else torch.zeros(n, dtype=torch.long, device=ious.device)
        token = tokens.gather(1, best.view(n, 1, 1).expand(-1, 1, tokens.shape[-1]))[:, 0]
        pointer = self._gate_pointer(sam2.object_pointer_proj(token), appearing)
        pick = best.view(n, 1, 1, 1)
        return FrameOutput(
            multimask_logits=low_res,
            high_res_multimasks=high_res_multi,
            ious=ious,
            object_score_logits=object_score_logits,
            mask_logits=low_res.gather(1, pick.expand(-1, 1, *low_res.shape[-2:])),
            high_res_masks=high_res_multi.gather(1, pick.expand(-1, 1, *high_res_multi.shape[-2:])),
            object_pointer=pointer,
        )

    def _mask_as_output(
        self, pix_feat: torch.Tensor, high_res: list[torch.Tensor], image_pe: torch.Tensor, mask: torch.Tensor
    ) -> FrameOutput:
        """Takes a given mask [N, S, S] as the frame's output; the decoder only makes the pointer."""
        dtype, size = pix_feat.dtype, self.image_size
        mask = mask.float().unsqueeze(1)
        if mask.shape[-2:] != (size, size):
            mask = F.interpolate(mask, size=(size, size), mode="bilinear", antialias=True)
        # float32 logits, as SAM 2's `_use_mask_as_output`
        high = mask * MASK_OUT_SCALE + MASK_OUT_BIAS
        low = F.interpolate(
            high, size=self.sam2.prompt_encoder.mask_input_size, mode="bilinear", antialias=True
        )
        head = self._sam_heads(
            pix_feat,
            high_res,
            image_pe,
            self.mask_pointer_multimask,
            mask_inputs=self.sam2.mask_downsample(mask.to(dtype)),
        )
        appearing = (mask.flatten(1) > 0).any(dim=1, keepdim=True)
        pointer = self._gate_pointer(head.object_pointer, appearing)
        return FrameOutput(
            multimask_logits=low,
            high_res_multimasks=high,
            ious=torch.ones(mask.shape[0], 1, dtype=dtype, device=mask.device),
            object_score_logits=appearing.to(dtype) * MASK_OUT_SCALE + MASK_OUT_BIAS,
            mask_logits=low,
            high_res_masks=high,
            object_pointer=pointer,
            from_mask=True,
        )

    def _gate_pointer(self, pointer: torch.Tensor, appearing: torch.Tensor) -> torch.Tensor:
        """Replaces the pointer of absent objects by the learned no-object pointer."""
        gate = appearing.to(pointer.dtype)
        return gate * pointer + (1 - gate) * self.sam2.no_object_pointer

    def _upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits -> float32 logits at the image size."""
        size = (self.image_size, self.image_size)
        return F.interpolate(low_res.float(), size=size, mode="bilinear", align_corners=False)

    # --- memory ---------------------------------------------------------------------------

    def _encode_memory(self, top: torch.Tensor, out: FrameOutput) -> FrameMemory:
        """Memory-encodes the frame's selected masks (SAM 2's `_encode_new_memory`, batched)."""
        sam2, masks = self.sam2, out.high_res_masks
        mem_size = tuple(4 * s for s in sam2.prompt_encoder.mask_input_size)
        if masks.shape[-2:] != mem_size:
            masks = F.interpolate(masks.float(), size=mem_size, mode="bilinear", antialias=True).to(
                masks.dtype
            )
        # At inference a given mask is binarised; otherwise probabilities feed the encoder.
        probs = (masks > 0).to(masks.dtype) if out.from_mask and not sam2.training else torch.sigmoid(masks)
        probs = probs * self.config.sigmoid_scale_for_mem_enc + self.config.sigmoid_bias_for_mem_enc
        features, pos = sam2.memory_encoder(self._to_map(top), probs.to(top.dtype))
        if sam2.occlusion_spatial_embedding_parameter is not None:
            absent = (out.object_score_logits <= 0).to(features.dtype)
            features = (
                features
                + absent[..., None, None] * sam2.occlusion_spatial_embedding_parameter[..., None, None]
            )
        if self.memory_dtype is not None:
            features = features.to(self.memory_dtype)
        return FrameMemory(
            features=features.flatten(2).permute(2, 0, 1),
            pos=pos.to(top.dtype).flatten(2).permute(2, 0, 1),
            object_pointer=out.object_pointer,
        )

    def _reliable(self, out: FrameOutput) -> list[bool]:
        """Per object: best predicted IoU > 0.3 and object-score logit > 0 (SeC's predictor)."""
        # compared in float64, as the official `.item() > 0.3` does: float32(0.3) counts as reliable
        best_iou = out.ious.detach().amax(dim=-1).double()
        return ((best_iou > RELIABLE_IOU) & (out.object_score_logits[:, 0].detach() > 0)).tolist()

    def _forget(self, state: TrackState, frame_idx: int) -> None:
        """Drops non-conditioning frames no later frame can reach: outside the memory and pointer
        window ("recent"); neither this frame nor among any object's latest listed reliable ones
        ("reliable")."""
        if state.memory_selection == "recent":
            horizon = max(self.sam2.num_maskmem, self.config.max_object_pointers_in_encoder)
            keep = {t for t in state.non_cond if t > frame_idx - horizon}
        else:
            newest_first = sorted(state.non_cond, reverse=True)
            keep = {frame_idx}
            for obj in range(state.num_objects):
                reliable = [t for t in newest_first if state.non_cond[t].reliable[obj]]
                keep.update(reliable[: self._reliable_horizon(state)])
        for t in [t for t in state.non_cond if t not in keep]:
            del state.non_cond[t]

    def _to_map(self, flat: torch.Tensor, level: int = -1) -> torch.Tensor:
        """(HW, B, C) -> (B, C, H, W) at the size of feature level `level`."""
        height, width = self.sam2.backbone_feature_sizes[level]
        return flat.permute(1, 2, 0).reshape(-1, flat.shape[-1], height, width)
