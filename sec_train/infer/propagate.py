"""SeC video propagation: SAM 2 tracking from each object's first mask, with concept guidance
on scene changes.

Per frame: the frame is encoded once and all N objects are tracked in one batch from the
memory bank. When the HSV scene-change detector fires (and concepts are on), the LVLM reads
each object's keyframe bank plus the current frame and returns one concept embedding per
object (one batched LVLM call); on that frame the mask decoder sees the average of the memory-
and concept-conditioned features. Objects confidently found on such a frame join their bank.
With `use_concept=False` this is plain SAM 2 tracking, the baseline SeC is compared with.

As the released predictor does by default, each object reads its recent *reliable* frames from
memory (`memory_selection`, see `Sam2Tracker`), small holes in the predicted masks are filled
(`fill_hole_area`) and an overlap between objects goes to the highest logit (`overlap`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sec_train.data.collate import PAD_MULTIPLE
from sec_train.data.images import resize_chw, resize_image, to_chw
from sec_train.data.prompts import inference_prompt
from sec_train.infer.keyframes import DEFAULT_BANK_SIZE, KeyframeBank
from sec_train.infer.postprocess import OverlapRule, compose_labels, fill_holes
from sec_train.infer.scene import DEFAULT_THRESHOLD, SceneChangeDetector
from sec_train.infer.video import Video
from sec_train.model.config import MemorySelection
from sec_train.model.sam2 import normalize_images
from sec_train.model.sec import SeCModel
from sec_train.model.tracker import (
    MASK_OUT_BIAS,
    MASK_OUT_SCALE,
    FrameFeatures,
    FrameOutput,
    TrackState,
)

# SeC's predictor fills holes up to this area by default (`apply_postprocessing`, on unless a
# config turns it off: inference/modeling_sec.py:167, inference/sam2_video_predictor.py:41); its VOS
# evaluation script turns it off unless asked (vos_evaluation/vos_inference.py:310,356)
RELEASED_FILL_HOLE_AREA = 8


@dataclass
class PropagationConfig:
    """How a video is propagated.

    Args:
        use_concept (`bool`): call the LVLM on scene changes (SeC); False is plain SAM 2.
        scene_threshold (`float`): Bhattacharyya distance above which a frame is a scene change.
        bank_size (`int`): keyframes the LVLM sees at most, the first frame included.
        memory_selection (`str`): "reliable" (SeC's predictor) or "recent" (plain SAM 2).
        fill_hole_area (`int`): background components of at most this many low-res pixels become
            foreground (SAM 2's `fill_hole_area`); 0 turns it off.
        overlap (`str`): who gets a pixel several objects claim, "highest_logit" or "lower_id".
    """

    use_concept: bool = True
    scene_threshold: float = DEFAULT_THRESHOLD
    bank_size: int = DEFAULT_BANK_SIZE
    memory_selection: MemorySelection = "reliable"
    fill_hole_area: int = RELEASED_FILL_HOLE_AREA
    overlap: OverlapRule = "highest_logit"


@dataclass
class PropagationStats:
    """What a propagation did: which frames were scene changes and called the LVLM."""

    num_frames: int = 0
    scene_changes: list[int] = field(default_factory=list)
    lvlm_frames: list[int] = field(default_factory=list)

    @property
    def lvlm_calls(self) -> int:
        return len(self.lvlm_frames)


@dataclass
class _Group:
    """Objects prompted on the same frame: tracked together, in one state."""

    object_ids: list[int]
    state: TrackState
    banks: list[KeyframeBank] | None


class SeCPropagator:
    """Runs a `SeCModel` over videos.

    Args:
        model (`SeCModel`): in eval mode; its device is where inference runs.
        config (`PropagationConfig`): concept switch, scene threshold, bank size.
        scene_changes (`dict[str, list[int]]`, *optional*): the frames the detector fired on in
            each video, shared by propagators with the same `scene_threshold` that run the same
            videos (the detector depends on the frames alone): filled on a video's first run, read
            instead of running the detector again (its 1024 x 1024 histograms cost on CPU about
            what a toy model's tracking does).
        frame_features (`dict[tuple[str, int], FrameFeatures]`, *optional*): each frame's image
            features by `(video name, t)`, shared by propagators of models with the same image
            encoder (passes of one model, its ablations): encoded once, read after.
    """

    def __init__(
        self,
        model: SeCModel,
        config: PropagationConfig | None = None,
        scene_changes: dict[str, list[int]] | None = None,
        frame_features: dict[tuple[str, int], FrameFeatures] | None = None,
    ):
        self.model = model
        self.config = config or PropagationConfig()
        self.scene_changes = scene_changes
        self.frame_features = frame_features
        self.device = next(model.parameters()).device
        if self.config.use_concept and model.tokenizer is None:
            raise ValueError("concept guidance needs the model's tokenizer; run with use_concept=False")

    # no_grad rather than inference_mode: tensors made here (e.g. parameters ZeRO-3 gathers
    # during validation) must stay usable by autograd afterwards
    @torch.no_grad()
    def run(
        self, video: Video, stats: PropagationStats | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yields `(t, frame, labels)` for every frame: the uint8 `[H, W, 3]` frame and a uint8
        `[H, W]` map of the object ids. Each object is prompted with its first annotation (all
        on frame 0 for DAVIS and `predict`); a prompt frame yields the prompt. `stats`, if given,
        is filled in as frames go by."""
        stats = stats if stats is not None else PropagationStats()
        stats.num_frames = len(video)
        prompts = video.prompts()
        known = None if self.scene_changes is None else self.scene_changes.get(video.name)
        detector = SceneChangeDetector(self.config.scene_threshold) if self.config.use_concept else None
        groups: list[_Group] = []
        shape = None
        for t in range(len(video)):
            frame = video.frame(t)
            shape = shape or frame.shape
            if frame.shape != shape:
                raise ValueError(f"{video.name}: frame {t} is {frame.shape}, frame 0 is {shape}")
            changed = detector is not None and (t in known if known is not None else detector.update(frame))
            if changed:
                stats.scene_changes.append(t)
            features = self._features(video.name, t, frame)
            scores = self._track(groups, features, t, frame, changed, stats) if groups else {}
            if t in prompts:
                scores.update(self._start_group(groups, video, prompts[t], features, t, frame))
            yield t, frame, compose_labels(scores, shape[:2], self.config.overlap)
        if detector is not None and self.scene_changes is not None:
            self.scene_changes[video.name] = list(stats.scene_changes)

    def _track(
        self,
        groups: list[_Group],
        features: FrameFeatures,
        t: int,
        frame: np.ndarray,
        scene_change: bool,
        stats: PropagationStats,
    ) -> dict[int, np.ndarray]:
        """Tracks every started object on frame `t`; on a scene change with concepts from the LVLM.
        Returns each object's mask logits at the video's size."""
        concepts: list[torch.Tensor | None] = [None] * len(groups)
        if scene_change:
            stats.lvlm_frames.append(t)
            concept = self.concepts([bank for g in groups for bank in g.banks], frame)
            concepts = list(concept.split([len(g.object_ids) for g in groups]))
        scores = {}
        for group, concept in zip(groups, concepts):
            out = self.model.tracker.track_frame(group.state, features, t, concept=concept)
            logits = self._video_logits(out, frame.shape[:2], self.config.fill_hole_area)
            if concept is not None:
                object_scores = out.object_score_logits[:, 0].float().cpu().tolist()
                for bank, mask, score in zip(group.banks, logits > 0, object_scores):
                    bank.update(t, frame, mask, score, used_lvlm=True)
            scores.update(zip(group.object_ids, logits))
        return scores

    def _start_group(
        self,
        groups: list[_Group],
        video: Video,
        prompt: np.ndarray,
        features: FrameFeatures,
        t: int,
        frame: np.ndarray,
    ) -> dict[int, np.ndarray]:
        """Prompts the objects whose first annotation is on frame `t` with their masks; returns
        the masks as SAM 2's mask-as-output logits (+-10)."""
        if prompt.shape != frame.shape[:2]:
            raise ValueError(
                f"{video.name}: the mask of frame {t} is {prompt.shape}, the frame {frame.shape[:2]}"
            )
        object_ids = [int(i) for i in np.unique(prompt) if i != 0]
        masks = np.stack([prompt == obj for obj in object_ids])
        state = self.model.tracker.init_state(
            num_objects=len(object_ids), num_frames=len(video), memory_selection=self.config.memory_selection
        )
        self.model.tracker.track_frame(state, features, t, mask_prompt=self._prompt_masks(masks))
        groups.append(_Group(object_ids, state, self._new_banks(t, frame, masks)))
        return dict(zip(object_ids, masks * MASK_OUT_SCALE + MASK_OUT_BIAS))

    def _features(self, video: str, t: int, frame: np.ndarray) -> FrameFeatures:
        """Frame `t` of `video` encoded, or read from `frame_features`."""
        if self.frame_features is None:
            return self._encode(frame)
        if (video, t) not in self.frame_features:
            self.frame_features[video, t] = self._encode(frame)
        return self.frame_features[video, t]

    def _encode(self, frame: np.ndarray) -> FrameFeatures:
        """One frame through SAM 2's image encoder."""
        size = self.model.sam_image_size
        image = resize_chw(frame, size)[None].to(self.device)
        return self.model.tracker.encode_frames(
            normalize_images(image, self.model.compute_dtype(self.device))
        )

    def _prompt_masks(self, masks: np.ndarray) -> torch.Tensor:
        """Bool `[N, H, W]` -> `[N, S, S]` as SAM 2's predictor resizes a mask prompt (bilinear
        with antialiasing, then >= 0.5)."""
        size = self.model.sam_image_size
        tensor = torch.from_numpy(masks).to(self.device, torch.float32)[:, None]
        resized = F.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        return (resized[:, 0] >= 0.5).float()

    @staticmethod
    def _video_logits(
        out: FrameOutput, shape: tuple[int, int], fill_hole_area: int = RELEASED_FILL_HOLE_AREA
    ) -> np.ndarray:
        """The selected low-res mask logits, holes filled (before resizing, as SAM 2 does),
        upsampled to the video's size: float32 `[N, H, W]`."""
        low_res = fill_holes(out.mask_logits.float(), fill_hole_area)
        logits = F.interpolate(low_res, size=shape, mode="bilinear", align_corners=False)
        return logits[:, 0].cpu().numpy()

    def _new_banks(self, t: int, frame: np.ndarray, masks: np.ndarray) -> list[KeyframeBank] | None:
        """One bank per object, starting with its prompt frame; none without concepts."""
        if not self.config.use_concept:
            return None
        banks = [KeyframeBank(self.model.lvlm_image_size, self.config.bank_size) for _ in masks]
        for bank, mask in zip(banks, masks):
            bank.add(t, frame, mask)
        return banks

    def concepts(self, banks: list[KeyframeBank], frame: np.ndarray) -> torch.Tensor:
        """One batched LVLM call: each object's keyframes + the current frame -> `[N, 256]`."""
        model, tokenizer = self.model, self.model.tokenizer
        current = resize_image(frame, model.lvlm_image_size)
        images, prompts = [], []
        for bank in banks:
            frames = bank.images() + [current]
            images += frames
            prompts.append(inference_prompt(tokenizer, len(frames), model.num_image_tokens))
        length = -(-max(len(p) for p in prompts) // PAD_MULTIPLE) * PAD_MULTIPLE
        input_ids = torch.full((len(prompts), length), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, ids in enumerate(prompts):
            input_ids[i, : len(ids)], attention_mask[i, : len(ids)] = ids, 1
        return model.concept_embedding(
            torch.stack([to_chw(image) for image in images]).to(self.device),
            input_ids.to(self.device),
            attention_mask.to(self.device),
            torch.tensor([len(bank) + 1 for bank in banks], device=self.device),
        )
