"""SAM 2 between Meta's original layout (`sam2.1_hiera_large.pt`, SeC's `grounding_encoder.*`)
and transformers' `Sam2VideoModel`, ours.

Both layouts hold the same tensors in the same shapes, with two exceptions handled by explicit
steps: Meta's four 1-row `point_embeddings.i` are one `point_embed` [4, C] here, and Meta's
prompt-encoder Gaussian matrix is also transformers' `shared_image_embedding` (two keys here, one
there; export keeps the image-wide one and warns if they differ).
"""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import torch
from transformers import Sam2VideoConfig, Sam2VideoModel

from sec_train.convert.rename import Renamer
from sec_train.convert.streaming import ShardWriter, Step, TensorSource, check_plan, fresh_output, run_plan
from sec_train.model.sam2 import real_sam2_config, set_num_maskmem

NUM_POINT_EMBEDDINGS = 4
META_LAYER_SCALE = "gamma"
_POINT_ORIGINAL = "sam_prompt_encoder.point_embeddings.{}.weight"
_POINT_OURS = "prompt_encoder.point_embed.weight"
_GAUSSIAN_ORIGINAL = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_GAUSSIAN_OURS = (
    "prompt_encoder.shared_embedding.positional_embedding",
    "shared_image_embedding.positional_embedding",
)


def _mlp_rules(original: str, ours: str, num_layers: int) -> list[tuple[str, str]]:
    """Meta's `MLP.layers.i` -> transformers' `proj_in`, `layers.0 ..`, `proj_out`."""
    names = ["proj_in", *(f"layers.{i}" for i in range(num_layers - 2)), "proj_out"]
    return [(f"{original}layers.{i}.", f"{ours}{name}.") for i, name in enumerate(names)]


def memory_attention_rules(original: str, ours: str) -> list[tuple[str, str]]:
    """Rules for a memory attention (also SeC's `token_attn` copy) under the given prefixes."""
    return [
        (original + "layers.{}.{}.out_proj.", ours + "layers.{}.{}.o_proj."),
        (original + "layers.{}.norm{}.", ours + "layers.{}.layer_norm{}."),
        (original + "norm.", ours + "layer_norm."),
        (original, ours),
    ]


def _mask_decoder_rules() -> list[tuple[str, str]]:
    original, ours = "sam_mask_decoder.", "mask_decoder."
    layer_o, layer_h = original + "transformer.layers.{}.", ours + "transformer.layers.{}."
    return [
        *_mlp_rules(layer_o + "mlp.", layer_h + "mlp.", 2),
        (layer_o + "norm{}.", layer_h + "layer_norm{}."),
        (layer_o + "{}.out_proj.", layer_h + "{}.o_proj."),
        (
            original + "transformer.final_attn_token_to_image.out_proj.",
            ours + "transformer.final_attn_token_to_image.o_proj.",
        ),
        (original + "transformer.norm_final_attn.", ours + "transformer.layer_norm_final_attn."),
        (original + "output_upscaling.0.", ours + "upscale_conv1."),
        (original + "output_upscaling.1.", ours + "upscale_layer_norm."),
        (original + "output_upscaling.3.", ours + "upscale_conv2."),
        *_mlp_rules(original + "output_hypernetworks_mlps.{}.", ours + "output_hypernetworks_mlps.{}.", 3),
        *_mlp_rules(original + "iou_prediction_head.", ours + "iou_prediction_head.", 3),
        *_mlp_rules(original + "pred_obj_score_head.", ours + "pred_obj_score_head.", 3),
        (original, ours),
    ]


def _image_encoder_rules() -> list[tuple[str, str]]:
    trunk, backbone = "image_encoder.trunk.", "vision_encoder.backbone."
    return [
        (trunk + "pos_embed_window", backbone + "pos_embed_window"),
        (trunk + "pos_embed", backbone + "pos_embed"),
        (trunk + "patch_embed.proj.", backbone + "patch_embed.projection."),
        (trunk + "blocks.{}.norm{}.", backbone + "blocks.{}.layer_norm{}."),
        *_mlp_rules(trunk + "blocks.{}.mlp.", backbone + "blocks.{}.mlp.", 2),
        (trunk + "blocks.{}.", backbone + "blocks.{}."),
        ("image_encoder.neck.convs.{}.conv.", "vision_encoder.neck.convs.{}."),
    ]


def _memory_encoder_rules(config: Sam2VideoConfig, layer_scale: str) -> list[tuple[str, str]]:
    # Meta's MaskDownSampler is one Sequential: (conv, norm, act) per stride-s layer, then a conv.
    layers = round(math.log(config.mask_downsampler_total_stride) / math.log(config.mask_downsampler_stride))
    down_o, down_h = "memory_encoder.mask_downsampler.encoder.", "memory_encoder.mask_downsampler."
    downsampler = [
        rule
        for i in range(layers)
        for rule in (
            (f"{down_o}{3 * i}.", f"{down_h}layers.{i}.conv."),
            (f"{down_o}{3 * i + 1}.", f"{down_h}layers.{i}.layer_norm."),
        )
    ]
    fuser_o, fuser_h = "memory_encoder.fuser.layers.{}.", "memory_encoder.memory_fuser.layers.{}."
    return [
        *downsampler,
        (f"{down_o}{3 * layers}.", f"{down_h}final_conv."),
        ("memory_encoder.pix_feat_proj.", "memory_encoder.feature_projection."),
        (fuser_o + layer_scale, fuser_h + "scale"),
        (fuser_o + "dwconv.", fuser_h + "depthwise_conv."),
        (fuser_o + "pwconv1.", fuser_h + "pointwise_conv1."),
        (fuser_o + "pwconv2.", fuser_h + "pointwise_conv2."),
        (fuser_o + "norm.", fuser_h + "layer_norm."),
        ("memory_encoder.out_proj.", "memory_encoder.projection."),
    ]


def _prompt_encoder_rules() -> list[tuple[str, str]]:
    original, ours = "sam_prompt_encoder.", "prompt_encoder."
    downscaling = {0: "conv1", 1: "layer_norm1", 3: "conv2", 4: "layer_norm2", 6: "conv3"}
    return [
        *(
            (f"{original}mask_downscaling.{i}.", f"{ours}mask_embed.{name}.")
            for i, name in downscaling.items()
        ),
        (original + "not_a_point_embed.", ours + "not_a_point_embed."),
        (original + "no_mask_embed.", ours + "no_mask_embed."),
    ]


def sam2_renamer(config: Sam2VideoConfig, layer_scale: str = META_LAYER_SCALE) -> Renamer:
    """The one-to-one part of the mapping (everything but the point and Gaussian embeddings).

    Args:
        layer_scale (`str`): the original name of the memory fuser's layer scale: Meta's `gamma`,
            or SeC's `g_weight` (SeC renames it, as old transformers loaders rename `gamma`).
    """
    return Renamer(
        [
            ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
            ("no_mem_embed", "no_memory_embedding"),
            ("no_mem_pos_enc", "no_memory_positional_encoding"),
            ("no_obj_ptr", "no_object_pointer"),
            ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
            ("mask_downsample.", "mask_downsample."),
            ("obj_ptr_tpos_proj.", "temporal_positional_encoding_projection_layer."),
            *_mlp_rules("obj_ptr_proj.", "object_pointer_proj.", 3),
            *_image_encoder_rules(),
            *_prompt_encoder_rules(),
            *_mask_decoder_rules(),
            *memory_attention_rules("memory_attention.", "memory_attention."),
            *_memory_encoder_rules(config, layer_scale),
        ]
    )


def _one_gaussian(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Meta's single Gaussian matrix from our two copies (equal unless built at random)."""
    prompt, image_wide = tensors
    if image_wide.device.type != "meta" and not torch.equal(prompt, image_wide):  # meta: shapes only
        # Mask-prompted SeC only reads the image-wide copy (a padding point's encoding is zeroed).
        warnings.warn(
            f"{_GAUSSIAN_OURS[0]} and {_GAUSSIAN_OURS[1]} differ; Meta's layout has one matrix, "
            f"exporting {_GAUSSIAN_OURS[1]}",
            stacklevel=2,
        )
    return image_wide


def plan_from_original(
    keys: list[str], config: Sam2VideoConfig, prefix: str = "", layer_scale: str = META_LAYER_SCALE
) -> list[Step]:
    """Steps from Meta's layout (keys under `prefix`) to `Sam2VideoModel` names.

    Keys no rule covers get no step, so `check_plan` reports them.
    """
    renamer = sam2_renamer(config, layer_scale)
    points = tuple(prefix + _POINT_ORIGINAL.format(i) for i in range(NUM_POINT_EMBEDDINGS))
    steps = [Step(_POINT_OURS, points, lambda ts: torch.cat(ts, dim=0))]
    steps += [Step(target, (prefix + _GAUSSIAN_ORIGINAL,)) for target in _GAUSSIAN_OURS]
    for key in keys:
        name = key.removeprefix(prefix)
        if key in points or name == _GAUSSIAN_ORIGINAL:
            continue
        if (target := renamer.forward(name)) is not None:
            steps.append(Step(target, (key,)))
    return steps


def plan_to_original(
    keys: list[str], config: Sam2VideoConfig, prefix: str = "", layer_scale: str = META_LAYER_SCALE
) -> list[Step]:
    """Steps from `Sam2VideoModel` names back to Meta's layout, each target under `prefix`."""
    renamer = sam2_renamer(config, layer_scale)
    steps = [
        Step(prefix + _POINT_ORIGINAL.format(i), (_POINT_OURS,), lambda ts, i=i: ts[0][i : i + 1])
        for i in range(NUM_POINT_EMBEDDINGS)
    ]
    steps.append(Step(prefix + _GAUSSIAN_ORIGINAL, _GAUSSIAN_OURS, _one_gaussian))
    for key in keys:
        if key == _POINT_OURS or key in _GAUSSIAN_OURS:
            continue
        if (original := renamer.backward(key)) is not None:
            steps.append(Step(prefix + original, (key,)))
    return steps


def sam2_shapes(config: Sam2VideoConfig) -> dict[str, torch.Size]:
    """Every `Sam2VideoModel` state-dict key and shape for `config`, built on the meta device."""
    with torch.device("meta"):
        model = Sam2VideoModel(config)
    return {key: tensor.shape for key, tensor in model.state_dict().items()}


def detect_sam2_config(source: TensorSource, prefix: str = "") -> Sam2VideoConfig:
    """SAM 2.1 Hiera-L's config when the checkpoint has its shapes; anything else needs a config.

    The memory bank size is the checkpoint's (22 after SeC's stage 1).

    Raises:
        `ValueError` naming the found image-encoder width and depth.
    """
    patch = prefix + "image_encoder.trunk.patch_embed.proj.weight"
    if patch not in source:
        raise ValueError(f"{source.name}: no {patch}; is this a SAM 2 checkpoint?")
    width = source.get(patch).shape[0]
    trunk = prefix + "image_encoder.trunk.blocks."
    blocks = {key.removeprefix(trunk).split(".")[0] for key in source if key.startswith(trunk)}
    large = real_sam2_config()
    if (slots := prefix + "maskmem_tpos_enc") in source:
        large.num_maskmem = source.get(slots).shape[0]
    if width == large.vision_config.backbone_config.hidden_size and len(blocks) == sum(
        large.vision_config.backbone_config.blocks_per_stage
    ):
        return large
    raise ValueError(
        f"{source.name}: a Hiera of width {width} and {len(blocks)} blocks is not SAM 2.1 Hiera-L, the "
        "built-in config; pass its Sam2VideoConfig (a transformers config.json) with --config"
    )


def resize_memory_bank(sam2_dir: Path, num_maskmem: int) -> None:
    """Rewrites a converted SAM 2 directory with `num_maskmem` memory slots (`set_num_maskmem`)."""
    model = Sam2VideoModel.from_pretrained(str(sam2_dir))
    if model.num_maskmem == num_maskmem:
        return
    set_num_maskmem(model, num_maskmem)
    shutil.rmtree(sam2_dir)
    model.save_pretrained(str(sam2_dir))


def write_sam2(
    source: TensorSource, steps: list[Step], config: Sam2VideoConfig, out: Path, num_maskmem: int | None
) -> None:
    """Writes a `Sam2VideoModel.from_pretrained` directory from checked steps."""
    with ShardWriter(out) as writer:
        run_plan(steps, source, writer, sam2_shapes(config), desc="SAM 2")
    config.save_pretrained(str(out))
    if num_maskmem is not None:
        resize_memory_bank(out, num_maskmem)


def import_sam2(
    ckpt: str | Path, out: str | Path, config: Sam2VideoConfig | None = None, num_maskmem: int | None = None
) -> None:
    """Converts Meta's SAM 2 checkpoint (`torch.save({"model": state_dict})`) to a transformers dir.

    Args:
        ckpt (`str` or `Path`): e.g. `sam2.1_hiera_large.pt`; read memory-mapped.
        out (`str` or `Path`): the `Sam2VideoModel` directory to write (config.json + shards).
        config (`Sam2VideoConfig`, *optional*): the architecture; detected for SAM 2.1 Hiera-L.
        num_maskmem (`int`, *optional*): resize the memory bank (SeC's stage 1: 22), interpolating
            the temporal encodings.

    Raises:
        `ValueError` listing missing and unexpected keys, or a shape mismatch.
    """
    source = TensorSource.from_torch(ckpt)
    config = config if config is not None else detect_sam2_config(source)
    steps = plan_from_original(source.keys(), config)
    check_plan(steps, source, sam2_shapes(config))
    write_sam2(source, steps, config, fresh_output(out), num_maskmem)
