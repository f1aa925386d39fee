"""InternVL 2.5 between its original chat-model layout (`vision_model.*`, `mlp1.*`,
`language_model.*`, `InternVLChatModel` config.json) and transformers'
`InternVLForConditionalGeneration`, ours.

Our side is named as `save_pretrained` writes it (`vision_tower.*`, `multi_modal_projector.*`,
`language_model.model.*`), which `from_pretrained` reads back. Tensors keep their shapes except
the ViT's fused `attn.qkv`, which is three `q/k/v_proj` here; the Qwen2 LLM keeps its names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from sec_train.convert.rename import Renamer
from sec_train.convert.streaming import ShardWriter, Step, TensorSource, check_plan, fresh_output, run_plan
from sec_train.model.tokenizer import load_tokenizer
from sec_train.tokens import IMG_CONTEXT

_VIT, _TOWER = "vision_model.encoder.layers.{}.", "vision_tower.encoder.layer.{}."
_QKV = re.compile(r"vision_model\.encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)\Z")
_Q_PROJ = re.compile(r"vision_tower\.encoder\.layer\.(\d+)\.attention\.q_proj\.(weight|bias)\Z")
_OURS_QKV = "vision_tower.encoder.layer.{}.attention.{}_proj.{}"
_ORIGINAL_QKV = "vision_model.encoder.layers.{}.attn.qkv.{}"
_LM_HEAD, _EMBEDDINGS = "language_model.lm_head.weight", "language_model.model.embed_tokens.weight"
# config.json entries of the original sub-configs that are runtime switches, not architecture
_RUNTIME_KEYS = {"architectures", "auto_map", "attn_implementation", "use_flash_attn", "transformers_version"}

INTERNVL_RENAMER = Renamer(
    [
        ("vision_model.embeddings.class_embedding", "vision_tower.embeddings.cls_token"),
        ("vision_model.embeddings.position_embedding", "vision_tower.embeddings.position_embeddings"),
        (
            "vision_model.embeddings.patch_embedding.",
            "vision_tower.embeddings.patch_embeddings.projection.",
        ),
        (_VIT + "ls1", _TOWER + "lambda_1"),
        (_VIT + "ls2", _TOWER + "lambda_2"),
        (_VIT + "attn.proj.", _TOWER + "attention.projection_layer."),
        (_VIT + "norm1.", _TOWER + "layernorm_before."),
        (_VIT + "norm2.", _TOWER + "layernorm_after."),
        (_VIT + "mlp.", _TOWER + "mlp."),
        ("mlp1.0.", "multi_modal_projector.layer_norm."),
        ("mlp1.1.", "multi_modal_projector.linear_1."),
        ("mlp1.3.", "multi_modal_projector.linear_2."),
        ("language_model.", "language_model."),
    ]
)
# transformers' in-memory names -> the names `save_pretrained` writes
_SAVED_NAMES = Renamer(
    [
        ("model.vision_tower.", "vision_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
    ]
)


def _third(i: int):
    return lambda tensors: tensors[0].chunk(3, dim=0)[i]


def plan_from_original(keys: list[str]) -> list[Step]:
    """Steps from the original layout to `InternVLForConditionalGeneration` names.

    Keys no rule covers get no step, so `check_plan` reports them.
    """
    steps = []
    for key in keys:
        if match := _QKV.match(key):
            layer, kind = match.groups()
            steps += [Step(_OURS_QKV.format(layer, p, kind), (key,), _third(i)) for i, p in enumerate("qkv")]
        elif (target := INTERNVL_RENAMER.forward(key)) is not None:
            steps.append(Step(target, (key,)))
    return steps


def plan_to_original(keys: list[str]) -> list[Step]:
    """Steps from `InternVLForConditionalGeneration` names back to the original layout.

    A tied LLM (no saved `lm_head`) gets one from its input embeddings: the original chat model
    always unties them.
    """
    steps = []
    if _LM_HEAD not in keys and _EMBEDDINGS in keys:
        steps.append(Step(_LM_HEAD, (_EMBEDDINGS,)))
    for key in keys:
        if match := _Q_PROJ.match(key):
            layer, kind = match.groups()
            sources = tuple(_OURS_QKV.format(layer, p, kind) for p in "qkv")
            steps.append(Step(_ORIGINAL_QKV.format(layer, kind), sources, lambda ts: torch.cat(ts, dim=0)))
        elif ".attention.k_proj." in key or ".attention.v_proj." in key:
            continue  # fused into qkv by the q_proj step
        elif (original := INTERNVL_RENAMER.backward(key)) is not None:
            steps.append(Step(original, (key,)))
    return steps


def lvlm_shapes(config: InternVLConfig) -> dict[str, torch.Size]:
    """Saved name -> shape of every tensor the model stores once (a tied `lm_head` is left out)."""
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    stored = dict(model.named_parameters()) | dict(model.named_buffers())
    return {_SAVED_NAMES.forward(key): t.shape for key, t in model.state_dict().items() if key in stored}


def _architecture(raw: dict) -> dict:
    return {k: v for k, v in raw.items() if k not in _RUNTIME_KEYS and not k.startswith("_")}


def config_from_original(raw: dict, image_token_id: int) -> InternVLConfig:
    """`InternVLConfig` from an original InternVL 2.5 / SeC config.json (already parsed).

    Args:
        raw (`dict`): holds `vision_config` (InternViT) and `llm_config` (Qwen2).
        image_token_id (`int`): the tokenizer's `<IMG_CONTEXT>` id.
    """
    vit = raw["vision_config"]
    image_size = raw.get("force_image_size") or vit["image_size"]
    vision = InternVLVisionConfig(
        hidden_size=vit["hidden_size"],
        num_hidden_layers=vit["num_hidden_layers"],
        num_attention_heads=vit["num_attention_heads"],
        intermediate_size=vit["intermediate_size"],
        image_size=image_size,
        patch_size=vit["patch_size"],
        attention_bias=vit.get("qkv_bias", True),
        use_qk_norm=vit.get("qk_normalization", False),
        norm_type=vit.get("norm_type", "layer_norm"),
        layer_norm_eps=vit.get("layer_norm_eps", 1e-6),
        hidden_act=vit.get("hidden_act", "gelu"),
        layer_scale_init_value=vit.get("initializer_factor", 0.1),
        use_absolute_position_embeddings=True,
    )
    # InternVL's and SeC's chat models untie the LLM's embeddings whatever llm_config says
    text = Qwen2Config(**{**_architecture(raw["llm_config"]), "tie_word_embeddings": False})
    ratio = raw.get("downsample_ratio", 0.5)
    return InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=image_token_id,
        image_seq_length=int(image_size // vision.patch_size[0] * ratio) ** 2,
        downsample_ratio=ratio,
        vision_feature_layer=raw.get("select_layer", -1),
        tie_word_embeddings=False,
    )


def config_to_original(config: InternVLConfig) -> dict:
    """The original chat-model config.json entries (vision, LLM, image geometry) for `config`."""
    vision = config.vision_config
    llm = config.text_config.to_dict() | {"architectures": ["Qwen2ForCausalLM"], "tie_word_embeddings": False}
    return {
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": vision.hidden_size,
            "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads,
            "intermediate_size": vision.intermediate_size,
            "image_size": vision.image_size[0],
            "patch_size": vision.patch_size[0],
            "qkv_bias": vision.attention_bias,
            "qk_normalization": vision.use_qk_norm,
            "norm_type": vision.norm_type,
            "layer_norm_eps": vision.layer_norm_eps,
            "hidden_act": vision.hidden_act,
            "initializer_factor": vision.layer_scale_init_value,
            "use_flash_attn": False,
        },
        "llm_config": llm,
        "downsample_ratio": config.downsample_ratio,
        "force_image_size": vision.image_size[0],
        "select_layer": config.vision_feature_layer,
        "ps_version": "v2",
        "template": "internvl2_5",
    }


def read_original(src: str | Path) -> tuple[dict, InternVLConfig, TensorSource, PreTrainedTokenizerBase]:
    """An original-layout directory: its config.json (raw and as `InternVLConfig`), its tensors
    and its tokenizer (with `[SEG]`)."""
    src = Path(src)
    path = src / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{src}: no config.json; expected an InternVL 2.5 / SeC model directory")
    raw = json.loads(path.read_text())
    tokenizer = load_tokenizer(src)
    try:
        config = config_from_original(raw, tokenizer.convert_tokens_to_ids(IMG_CONTEXT))
    except KeyError as err:
        raise ValueError(f"{path}: not an InternVL chat-model config, it lacks {err}") from err
    return raw, config, TensorSource.from_safetensors(src), tokenizer


def write_lvlm(
    source: TensorSource,
    steps: list[Step],
    config: InternVLConfig,
    tokenizer: PreTrainedTokenizerBase,
    out: Path,
) -> None:
    """Writes an `InternVLForConditionalGeneration.from_pretrained` directory with the tokenizer."""
    with ShardWriter(out) as writer:
        run_plan(steps, source, writer, lvlm_shapes(config), desc="InternVL")
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def import_internvl(src: str | Path, out: str | Path) -> None:
    """Converts an original InternVL 2.5 directory (e.g. InternVL2_5-4B) to a transformers one.

    Args:
        src (`str` or `Path`): config.json, safetensors shards (+ index) and tokenizer files.
        out (`str` or `Path`): written like `save_pretrained` plus the tokenizer (with `[SEG]`),
            ready for `ModelConfig(lvlm=out)`.

    Raises:
        `ValueError` listing missing and unexpected keys, or a shape mismatch.
    """
    _, config, source, tokenizer = read_original(src)
    steps = plan_from_original(source.keys())
    check_plan(steps, source, lvlm_shapes(config))
    write_lvlm(source, steps, config, tokenizer, fresh_output(out))
