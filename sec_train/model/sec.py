"""SeCModel: InternVL + SAM 2 + the concept parts ([SEG], `text_hidden_fcs`, `token_attn`).

The module and its forward dispatch by batch type and `ModelConfig.mode`: a `Stage1Batch`
("stage1") goes to `stage1.stage1_losses`, a `Stage2Batch` ("concept_only" or "fused") to the
parts in `stage2`. Building and loading weights is `sec_train.model.build`'s job.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    InternVLForConditionalGeneration,
    PreTrainedTokenizerBase,
    Sam2VideoModel,
)

from sec_train.model.attention import use_cpu_dropout_attention
from sec_train.model.config import ModelConfig
from sec_train.model.gradient_order import fixed_gradient_order
from sec_train.model.lvlm import image_tokens_per_frame, lvlm_image_size
from sec_train.model.sam2 import normalize_images
from sec_train.model.stage1 import stage1_losses
from sec_train.model.stage2 import concept_from_hidden, lm_loss, target_losses, target_outputs
from sec_train.model.token_attn import CONCEPT_DIM, build_token_attn
from sec_train.model.tracker import FrameOutput, Sam2Tracker
from sec_train.tokens import SEG_TOKEN
from sec_train.types import LossDict, Stage1Batch, Stage2Batch

# the parameters SAM 2 runs with: SAM 2's own and the concept attention
SAM_SIDE = ("sam2.", "token_attn.")


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
        use_cpu_dropout_attention(sam2)  # before the copy, so token_attn attends the same way
        self.token_attn = build_token_attn(sam2, config.token_attn_dropout)
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

        SAM 2's side runs once per frame, so how its trainable parameters' gradients interleave
        with the rest depends on the batch; they are made ready last, in a fixed order, as
        ZeRO-2's bucketed reduction needs (`fixed_gradient_order`).

        Args:
            batch (`Stage1Batch` or `Stage2Batch`): uint8 images, normalized here on their device.
        """
        with fixed_gradient_order(self, SAM_SIDE):
            return self._losses(batch)

    def _losses(self, batch: Stage1Batch | Stage2Batch) -> LossDict:
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
        concept = concept_from_hidden(
            self.text_hidden_fcs, hidden, batch.input_ids, self.seg_token_id, batch.keys
        )
        losses = target_losses(self._target_outputs(batch, concept), batch, self.config.loss)
        losses["loss_lm"] = lm_loss(self.lvlm.lm_head, hidden, batch.labels)
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
        return concept_from_hidden(self.text_hidden_fcs, hidden, input_ids, self.seg_token_id, keys=[])

    def _lvlm_hidden(
        self, lvlm_images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The LLM's last (normed) hidden states [B, L, h]; image tokens carry the frames' features."""
        pixels = normalize_images(lvlm_images, self.compute_dtype(lvlm_images.device))
        out = self.lvlm.model(
            input_ids=input_ids, pixel_values=pixels, attention_mask=attention_mask, use_cache=False
        )
        return out.last_hidden_state

    # --- SAM 2 ----------------------------------------------------------------------------

    def _stage1(self, batch: Stage1Batch) -> LossDict:
        images = normalize_images(batch.images, self.compute_dtype(batch.images.device))
        # tracked frames are drawn from the global RNG: the trainer seeds it alike in every
        # process and checkpoints save it, so a resumed run draws the frames the full run would
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        return stage1_losses(self.tracker, images, batch, self.config, generator)

    def _target_outputs(self, batch: Stage2Batch, concept: torch.Tensor) -> FrameOutput:
        """SAM 2's prediction on each sample's target frame, guided by `concept` [B, 256]."""
        images = normalize_images(batch.sam_images, self.compute_dtype(batch.sam_images.device))
        return target_outputs(self.tracker, images, batch, concept, self.config.mode)

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
