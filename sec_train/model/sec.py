"""SeCModel: InternVL + SAM 2 + the concept parts ([SEG], `text_hidden_fcs`, `token_attn`).

Forward by batch type and `ModelConfig.mode`:

- `Stage1Batch` ("stage1"): SAM 2 tracking losses over clips (`stage1_losses`).
- `Stage2Batch`, "concept_only" (the released recipe): the LVLM reads the reference frames and
  the target; its last hidden state at `[SEG]` -> `text_hidden_fcs` -> a 256-d concept; SAM 2's
  features of the target frame are conditioned on it by `token_attn` alone -> mask decoder.
- `Stage2Batch`, "fused" (what inference does): the tracker runs over the sample's SAM clip
  from a GT-mask prompt on its first frame; on the target frame the mask decoder sees the
  average of memory- and concept-conditioned features.

Stage-2 losses: SAM 2's multi-mask loss on the target frame plus the LLM's cross-entropy on the
answer tokens.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    InternVLForConditionalGeneration,
    PreTrainedTokenizerBase,
    Sam2VideoModel,
)

from sec_train.model.config import ModelConfig
from sec_train.model.losses import multimask_losses
from sec_train.model.lvlm import (
    build_real_lvlm_meta,
    build_toy_lvlm,
    image_tokens_per_frame,
    load_lvlm,
    lvlm_image_size,
)
from sec_train.model.sam2 import build_sam2, normalize_images, set_num_maskmem
from sec_train.model.stage1 import stage1_losses
from sec_train.model.token_attn import CONCEPT_DIM, build_token_attn
from sec_train.model.tokenizer import SEG_TOKEN
from sec_train.model.tracker import FrameFeatures, FrameOutput, Sam2Tracker
from sec_train.model.weights import (
    PARTS_FILE,
    SEC_PARTS,
    TRAINABLE_FILE,
    load_model_config,
    load_trainable,
    read_model_dir,
)
from sec_train.types import LossDict, Stage1Batch, Stage2Batch


class SeCModel(nn.Module):
    """SeC: an LVLM whose `[SEG]` hidden state guides SAM 2 through `token_attn`.

    Args:
        config (`ModelConfig`): mode, loss weights and the rest of the model's recipe.
        lvlm (`InternVLForConditionalGeneration`): the LVLM.
        tokenizer (`PreTrainedTokenizerBase` or None): its tokenizer, holding `[SEG]`; None only
            for shape-only models on the meta device.
        sam2 (`Sam2VideoModel`): SAM 2; `token_attn` is initialised from its memory attention.
    """

    def __init__(
        self,
        config: ModelConfig,
        lvlm: InternVLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase | None,
        sam2: Sam2VideoModel,
    ):
        super().__init__()
        self.config = config
        self.lvlm = lvlm
        self.sam2 = sam2
        hidden = lvlm.config.text_config.hidden_size
        # same device (meta for shape-only builds) and dtype as the LLM whose states it reads
        embeddings = lvlm.get_input_embeddings().weight
        like = {"device": embeddings.device, "dtype": embeddings.dtype}
        self.text_hidden_fcs = nn.Sequential(
            nn.Linear(hidden, hidden, **like),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, CONCEPT_DIM, **like),
            nn.Dropout(0.0),
        )
        self.token_attn = build_token_attn(sam2)
        # a plain object holding references, so each weight appears once in the state dict
        self.tracker = Sam2Tracker(sam2, self.token_attn, memory_selection=config.memory_selection)
        self.tokenizer = tokenizer
        self.lora_config = None  # the peft LoraConfig once `apply_trainable` / a checkpoint adds LoRA
        if config.activation_checkpointing:
            lvlm.activation_checkpointing_enable()

    @property
    def lvlm_image_size(self) -> int:
        return lvlm_image_size(self.lvlm)

    @property
    def sam_image_size(self) -> int:
        return int(self.sam2.image_size)

    @property
    def num_image_tokens(self) -> int:
        """`<IMG_CONTEXT>` tokens per LVLM frame."""
        return image_tokens_per_frame(self.lvlm)

    @property
    def image_token_id(self) -> int:
        return int(self.lvlm.config.image_token_id)

    @property
    def seg_token_id(self) -> int:
        if self.tokenizer is None:
            raise RuntimeError("this SeC model has no tokenizer (a shape-only model on the meta device)")
        return int(self.tokenizer.convert_tokens_to_ids(SEG_TOKEN))

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """The autocast dtype when autocast is on for `device`, else the LVLM's parameter dtype."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.lvlm.dtype

    def forward(self, batch: Stage1Batch | Stage2Batch) -> LossDict:
        """Losses of one batch; "loss" is the weighted total, the other keys its parts.

        Args:
            batch (`Stage1Batch` or `Stage2Batch`): uint8 images, normalized here on their device.
        """
        mode = self.config.mode
        if isinstance(batch, Stage1Batch):
            if mode != "stage1":
                raise ValueError(f"got a Stage1Batch but the model's mode is {mode!r}")
            return self._stage1(batch)
        if not isinstance(batch, Stage2Batch):
            raise TypeError(
                f"SeCModel.forward takes a Stage1Batch or Stage2Batch, got {type(batch).__name__}"
            )
        if mode == "stage1":
            raise ValueError("got a Stage2Batch but the model's mode is 'stage1'")
        self._check_stage2(batch)
        hidden = self._lvlm_hidden(batch.lvlm_images, batch.input_ids, batch.attention_mask)
        concept = self._concept_from_hidden(hidden, batch.input_ids, batch.keys)
        losses = self._target_losses(batch, concept)
        losses["loss_lm"] = self._lm_loss(hidden, batch.labels)
        losses["loss"] = losses["loss"] + self.config.loss.lm * losses["loss_lm"]
        return losses

    # --- LVLM -----------------------------------------------------------------------------

    def concept_embedding(
        self,
        lvlm_images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        lvlm_frames_per_sample: torch.Tensor,
    ) -> torch.Tensor:
        """The concept embedding [B, 256] of B prompts (inference; see `Stage2Batch` for shapes)."""
        self._check_lvlm_inputs(lvlm_images, input_ids, attention_mask, lvlm_frames_per_sample, keys=[])
        hidden = self._lvlm_hidden(lvlm_images, input_ids, attention_mask)
        return self._concept_from_hidden(hidden, input_ids, keys=[])

    def _lvlm_hidden(
        self, lvlm_images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The LLM's last (normed) hidden states [B, L, h]; image tokens carry the frames' features."""
        pixels = normalize_images(lvlm_images, self.compute_dtype(lvlm_images.device))
        out = self.lvlm.model(
            input_ids=input_ids, pixel_values=pixels, attention_mask=attention_mask, use_cache=False
        )
        return out.last_hidden_state

    def _concept_from_hidden(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, keys: list[str]
    ) -> torch.Tensor:
        """`text_hidden_fcs` of the hidden state at each sample's last `[SEG]` -> [B, 256] float32."""
        is_seg = input_ids == self.seg_token_id
        missing = (~is_seg.any(dim=1)).nonzero().flatten().tolist()
        if missing:
            names = [keys[i] if i < len(keys) else f"#{i}" for i in missing]
            raise ValueError(f"samples {names} have no {SEG_TOKEN} token in input_ids")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = torch.where(is_seg, positions, -1).amax(dim=1)
        seg_hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.text_hidden_fcs(seg_hidden).float()

    def _lm_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy on labelled positions; the LM head runs on those rows only."""
        targets = labels[:, 1:]
        keep = targets != -100
        if not keep.any():
            return hidden.sum() * 0.0
        logits = self.lvlm.lm_head(hidden[:, :-1][keep])
        return F.cross_entropy(logits.float(), targets[keep])

    # --- SAM 2 ----------------------------------------------------------------------------

    def _stage1(self, batch: Stage1Batch) -> LossDict:
        images = normalize_images(batch.images, self.compute_dtype(batch.images.device))
        # tracked frames are drawn from the global RNG, which the trainer seeds per process
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        return stage1_losses(self.tracker, images, batch, self.config, generator)

    def _target_losses(self, batch: Stage2Batch, concept: torch.Tensor) -> LossDict:
        """SAM 2's multi-mask loss on each sample's target frame."""
        outputs = self._target_outputs(batch, concept)
        targets = batch.sam_masks[batch.sam_frames_per_sample.cumsum(0) - 1]
        return multimask_losses(
            torch.cat([o.high_res_multimasks for o in outputs]),
            torch.cat([o.ious for o in outputs]),
            torch.cat([o.object_score_logits for o in outputs]),
            targets,
            self.config.loss,
        )

    def _target_outputs(self, batch: Stage2Batch, concept: torch.Tensor) -> list[FrameOutput]:
        """SAM 2's prediction on each sample's target frame (the last of its SAM frames)."""
        images = normalize_images(batch.sam_images, self.compute_dtype(batch.sam_images.device))
        ends = batch.sam_frames_per_sample.cumsum(0).tolist()
        if self.config.mode == "concept_only":
            # only the target frames are encoded: concept-only mode never reads the memory bank
            features = self.tracker.encode_frames(images[[end - 1 for end in ends]])
            return [
                self.tracker.track_frame(
                    self.tracker.init_state(1),
                    features.frame(b),
                    0,
                    concept=concept[b : b + 1],
                    use_memory=False,
                    update_memory=False,
                )
                for b in range(len(ends))
            ]
        features = self.tracker.encode_frames(images)
        starts = [0] + ends[:-1]
        return [
            self._track_fused(features.frames(start, end), batch.sam_masks[start:end], concept[b : b + 1])
            for b, (start, end) in enumerate(zip(starts, ends))
        ]

    def _track_fused(
        self, features: FrameFeatures, masks: torch.Tensor, concept: torch.Tensor
    ) -> FrameOutput:
        """GT-mask prompt on frame 0, memory tracking after it, memory+concept fusion on the last frame."""
        tracker, last = self.tracker, features.num_frames - 1
        state = tracker.init_state(1, features.num_frames)
        tracker.track_frame(state, features.frame(0), 0, mask_prompt=masks[:1])
        for t in range(1, last):
            tracker.track_frame(state, features.frame(t), t)
        return tracker.track_frame(state, features.frame(last), last, concept=concept, update_memory=False)

    # --- input checks ---------------------------------------------------------------------

    def _check_lvlm_inputs(
        self,
        lvlm_images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        frames_per_sample: torch.Tensor,
        keys: list[str],
    ) -> None:
        batch_size = input_ids.shape[0]
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {list(attention_mask.shape)} != input_ids {list(input_ids.shape)}"
            )
        if frames_per_sample.shape != (batch_size,):
            raise ValueError(
                f"lvlm_frames_per_sample has shape {list(frames_per_sample.shape)}, expected [{batch_size}]"
            )
        if int(frames_per_sample.sum()) != lvlm_images.shape[0]:
            raise ValueError(
                f"lvlm_frames_per_sample sums to {int(frames_per_sample.sum())} but lvlm_images has "
                f"{lvlm_images.shape[0]} frames"
            )
        _check_size("lvlm_images", lvlm_images, self.lvlm_image_size)
        counts = (input_ids == self.image_token_id).sum(dim=1)
        expected = frames_per_sample.to(counts.device) * self.num_image_tokens
        for i in (counts != expected).nonzero().flatten().tolist():
            name = keys[i] if i < len(keys) else f"#{i}"
            raise ValueError(
                f"sample {name}: {int(counts[i])} image tokens in input_ids, but {int(frames_per_sample[i])} "
                f"frames x {self.num_image_tokens} tokens = {int(expected[i])}"
            )

    def _check_stage2(self, batch: Stage2Batch) -> None:
        self._check_lvlm_inputs(
            batch.lvlm_images, batch.input_ids, batch.attention_mask, batch.lvlm_frames_per_sample, batch.keys
        )
        if batch.labels.shape != batch.input_ids.shape:
            raise ValueError(f"labels {list(batch.labels.shape)} != input_ids {list(batch.input_ids.shape)}")
        frames = batch.sam_frames_per_sample
        if frames.shape != (batch.num_samples,) or int(frames.min()) < 1:
            raise ValueError(
                f"sam_frames_per_sample must be [{batch.num_samples}] counts >= 1, got {frames.tolist()}"
            )
        total = int(frames.sum())
        if batch.sam_images.shape[0] != total or batch.sam_masks.shape[0] != total:
            raise ValueError(
                f"sam_frames_per_sample sums to {total} but sam_images has {batch.sam_images.shape[0]} "
                f"frames and sam_masks {batch.sam_masks.shape[0]}"
            )
        _check_size("sam_images", batch.sam_images, self.sam_image_size)
        if batch.sam_masks.shape[-2:] != batch.sam_images.shape[-2:]:
            raise ValueError(f"sam_masks {list(batch.sam_masks.shape)} do not match sam_images' size")
        if self.config.mode == "fused" and int(frames.min()) < 2:
            short = [
                batch.keys[i] if i < len(batch.keys) else f"#{i}" for i in (frames < 2).nonzero().flatten()
            ]
            raise ValueError(
                f"fused mode needs a GT-prompted frame before the target; samples {short} have one frame"
            )


def _check_size(name: str, images: torch.Tensor, size: int) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
        raise ValueError(f"{name} must be [N, 3, {size}, {size}] for this model, got {list(images.shape)}")


def _build_lvlm(source: str) -> tuple[InternVLForConditionalGeneration, PreTrainedTokenizerBase | None]:
    if source == "toy":
        return build_toy_lvlm()
    if source == "real":
        return build_real_lvlm_meta(), None
    return load_lvlm(source)


def _from_init(cfg: ModelConfig) -> SeCModel:
    """Rebuilds from `cfg.init`: a model directory, or a trainable checkpoint over its base."""
    init = Path(cfg.init)
    if (init / TRAINABLE_FILE).is_file():
        saved = load_model_config(init)
        base_cfg = dataclasses.replace(
            cfg,
            lvlm=saved.lvlm,
            sam2=saved.sam2,
            init=saved.init,
            num_maskmem=cfg.num_maskmem or saved.num_maskmem,
        )
        model = build_sec_model(base_cfg)
        load_trainable(model, init)
        model.config = cfg
        return model
    lvlm, tokenizer, sam2, parts = read_model_dir(init)
    if cfg.num_maskmem is not None and cfg.num_maskmem != sam2.num_maskmem:
        set_num_maskmem(sam2, cfg.num_maskmem)
    model = SeCModel(cfg, lvlm, tokenizer, sam2)
    expected = {k for k in model.state_dict() if k.split(".")[0] in SEC_PARTS}
    if set(parts) != expected:
        differing = sorted(set(parts) ^ expected)[:10]
        raise ValueError(f"{init / PARTS_FILE} does not hold exactly the SeC parts: differs in {differing}")
    model.load_state_dict(parts, strict=False)
    return model


def build_sec_model(cfg: ModelConfig) -> SeCModel:
    """Builds SeC from a `ModelConfig`, in eval mode (the trainer switches to train).

    Args:
        cfg (`ModelConfig`): `cfg.init` (a model directory from `save_model_dir`, or a trainable
            checkpoint from `save_trainable`) wins over `cfg.lvlm` / `cfg.sam2`, each of which is
            "toy" (random, toy sizes), "real" (real sizes on the meta device, shapes only) or a
            local HF-format directory. `cfg.num_maskmem`, when set, resizes SAM 2's memory bank.

    Returns:
        `SeCModel`, deterministic for random parts (seed 0); the trainable policy is applied
        separately (`apply_trainable`).
    """
    if cfg.init is not None:
        return _from_init(cfg).eval()
    # Seeded so a toy base (and fresh text_hidden_fcs) is the same in every process and run: a
    # trainable checkpoint over "toy" reloads exactly. The caller's RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lvlm, tokenizer = _build_lvlm(cfg.lvlm)
        sam2 = build_sam2(cfg.sam2, cfg.num_maskmem)
        return SeCModel(cfg, lvlm, tokenizer, sam2).eval()
