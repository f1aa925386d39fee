"""SAM 2 configs, construction and the two changes SeC makes to it.

`toy_sam2_config` is a tiny SAM 2 (128 px, hidden width 128) for tests and CPU demos;
`real_sam2_config` is SAM 2.1 Hiera-L at 1024 px as Meta's `sam2.1_hiera_l.yaml` defines it.
Both are transformers `Sam2VideoConfig`s, so every module comes from `Sam2VideoModel`.

The toy sizes follow two constraints of transformers' implementation: memories are 64-d
(`kv_in_dim=64` is hard-coded in the memory attention) and object pointers are split into
64-d tokens, so `memory_encoder_output_channels` is 64 and the hidden width a multiple of 64.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Sam2VideoConfig, Sam2VideoModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def toy_sam2_config(num_maskmem: int = 7) -> Sam2VideoConfig:
    """A tiny SAM 2: 128 px images, a 4-stage Hiera of 5 blocks, hidden width 128, 2 memory layers.

    Args:
        num_maskmem (`int`, *optional*, defaults to 7):
            Size of the memory bank (conditioning frame + previous frames).

    Returns:
        `Sam2VideoConfig`: builds in well under a second; feature maps are 32, 16 and 8 px.
    """
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 32,
        "image_size": [128, 128],
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [32, 64, 128, 256],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "window_size_per_stage": [8, 4, 4, 2],
        # Block 3 is the second block of stage 3; a global block may not be a pooling block.
        "global_attention_blocks": [3],
        "window_positional_embedding_background_size": [4, 4],
    }
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": [256, 128, 64, 32],
        "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
        "fpn_hidden_size": 128,
    }
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": 128, "image_size": 128, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": 128,
            "mlp_dim": 256,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": 128,
        },
        image_size=128,
        num_maskmem=num_maskmem,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=2,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[8, 8],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=256,
    )


def real_sam2_config(num_maskmem: int = 7) -> Sam2VideoConfig:
    """SAM 2.1 Hiera-L at 1024 px, as in Meta's `sam2.1_hiera_l.yaml`.

    Args:
        num_maskmem (`int`, *optional*, defaults to 7):
            Size of the memory bank; SeC's stage 1 trains with 22.

    Returns:
        `Sam2VideoConfig`: the image encoder is Hiera-L (embed 144, stages 2-6-36-4, global
        attention at blocks 23, 33, 43); everything else uses the transformers defaults, which
        are SAM 2.1's (256-d memory attention of 4 layers, 64-d memories, 16 object pointers).
    """
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 144,
        "num_attention_heads": 2,
        "image_size": [1024, 1024],
        "blocks_per_stage": [2, 6, 36, 4],
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "window_size_per_stage": [8, 4, 16, 8],
        "global_attention_blocks": [23, 33, 43],
        "window_positional_embedding_background_size": [7, 7],
    }
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": [1152, 576, 288, 144],
        "backbone_feature_sizes": [[256, 256], [128, 128], [64, 64]],
        "fpn_hidden_size": 256,
    }
    return Sam2VideoConfig(vision_config=vision, image_size=1024, num_maskmem=num_maskmem)


def set_multimask_tracking(sam2: Sam2VideoModel, multimask: bool | None) -> None:
    """Sets whether frames tracked without prompts get 3 masks (SAM 2's
    `multimask_output_for_tracking`, read from the config at every call); None leaves it.

    One mask (set now or by the checkpoint) also turns off the mask decoder's fallback, in eval
    mode, from an unstable single mask (output token 0) to the best of its 3 multimask outputs
    (`dynamic_multimask_via_stability`): one-mask training trains token 0 alone, so the fallback
    would pick masks that never trained. 3 masks set now turn the fallback on, as SAM 2.1 has it.
    """
    decoder_config = sam2.config.mask_decoder_config
    if multimask is not None:
        sam2.config.multimask_output_for_tracking = multimask
        decoder_config.dynamic_multimask_via_stability = multimask
    if not sam2.config.multimask_output_for_tracking:
        decoder_config.dynamic_multimask_via_stability = False
    sam2.mask_decoder.dynamic_multimask_via_stability = decoder_config.dynamic_multimask_via_stability


def build_sam2(source: str, num_maskmem: int | None = None) -> Sam2VideoModel:
    """Builds SAM 2 from "toy", "real" or a local transformers checkpoint directory.

    Args:
        source (`str`):
            "toy" (random init of `toy_sam2_config`), "real" (SAM 2.1-L shapes on the meta device,
            for counting and planning without memory) or a directory holding a
            `Sam2VideoModel.save_pretrained` checkpoint.
        num_maskmem (`int`, *optional*):
            Memory bank size; None keeps the checkpoint's (7 for "toy" and "real"). A checkpoint
            with another size gets its temporal encodings interpolated by `set_num_maskmem`.

    Returns:
        `Sam2VideoModel`
    """
    if source == "toy":
        return Sam2VideoModel(toy_sam2_config(num_maskmem or 7))
    if source == "real":
        with torch.device("meta"):
            return Sam2VideoModel(real_sam2_config(num_maskmem or 7))
    path = Path(source)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"SAM 2 source {source!r} is neither 'toy', 'real' nor a checkpoint dir with config.json"
        )
    model = Sam2VideoModel.from_pretrained(path)
    if num_maskmem is not None and model.num_maskmem != num_maskmem:
        set_num_maskmem(model, num_maskmem)
    return model


def set_num_maskmem(sam2: Sam2VideoModel, num_maskmem: int) -> None:
    """Resizes the memory bank, interpolating the learned temporal encodings (SeC: 7 -> 22).

    The encodings are resampled linearly with aligned corners, so the first and last slots keep
    their values and the slots between them are spread evenly (SeC's rule for its stage 1).

    Args:
        sam2 (`Sam2VideoModel`):
            Modified in place: `num_maskmem`, `config.num_maskmem` and
            `memory_temporal_positional_encoding` ([num_maskmem, 1, 1, mem_dim]).
        num_maskmem (`int`):
            The new memory bank size, at least 2.
    """
    if num_maskmem < 2:
        raise ValueError(f"num_maskmem must be at least 2, got {num_maskmem}")
    old = sam2.memory_temporal_positional_encoding
    # interpolate wants [batch, channels, length]: slots become the length axis.
    slots = old.detach().flatten(1).t().unsqueeze(0)
    resized = F.interpolate(slots.float(), size=num_maskmem, mode="linear", align_corners=True)
    new = resized.squeeze(0).t().reshape(num_maskmem, *old.shape[1:]).to(old.dtype)
    sam2.memory_temporal_positional_encoding = torch.nn.Parameter(new, requires_grad=old.requires_grad)
    sam2.num_maskmem = num_maskmem
    sam2.config.num_maskmem = num_maskmem


def normalize_images(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 images [..., 3, H, W] -> SAM 2's input: ImageNet mean/std normalised, in `dtype`.

    Args:
        images (`torch.Tensor`): uint8, channels third from last.
        dtype (`torch.dtype`): the compute dtype (float32 or bfloat16).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize_images expects uint8 images, got {images.dtype}")
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1) * 255.0
    return ((images.float() - mean) / std).to(dtype)
