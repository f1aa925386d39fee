"""SeC-4B's released layout <-> the framework's model directory.

The release is one InternVL chat model whose state dict also holds SAM 2 under
`grounding_encoder.*` (Meta's names), SeC's concept attention under
`grounding_encoder.token_attn.*` (memory-attention names) and `text_hidden_fcs.*`; its
config.json is InternVL's plus `grounding_maskmem_num`. The framework splits it into `lvlm/`,
`sam2/` and `sec_parts.safetensors` (see `sec_train.model.weights`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import InternVLConfig, Sam2VideoConfig

from sec_train.convert import internvl, sam2
from sec_train.convert.rename import Renamer
from sec_train.convert.streaming import (
    ShardWriter,
    Step,
    TensorSource,
    fresh_output,
    plan_problems,
    run_plan,
)
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.token_attn import CONCEPT_DIM
from sec_train.model.tokenizer import load_tokenizer
from sec_train.model.weights import (
    CONFIG_FILE,
    PARTS_FILE,
    TRAINABLE_FILE,
    load_model_config,
    save_model_config,
    save_model_dir,
)

GROUNDING = "grounding_encoder."
TOKEN_ATTN_RENAMER = Renamer(sam2.memory_attention_rules(GROUNDING + "token_attn.", "token_attn."))
TEXT_FCS = "text_hidden_fcs."
SEC_MASKMEM = 22  # the release's memory bank when its config does not say
SEC_LAYER_SCALE = "g_weight"  # SeC's name for the memory fuser's `gamma` (its convert_to_hf.py)


def plan_parts_from_original(keys: list[str]) -> list[Step]:
    """Steps for `text_hidden_fcs.*` (same names) and `token_attn.*` (memory-attention names)."""
    steps = [Step(key, (key,)) for key in keys if key.startswith(TEXT_FCS)]
    for key in keys:
        if (target := TOKEN_ATTN_RENAMER.forward(key)) is not None:
            steps.append(Step(target, (key,)))
    return steps


def plan_parts_to_original(keys: list[str]) -> list[Step]:
    """The inverse of `plan_parts_from_original`."""
    steps = [Step(key, (key,)) for key in keys if key.startswith(TEXT_FCS)]
    for key in keys:
        if (original := TOKEN_ATTN_RENAMER.backward(key)) is not None:
            steps.append(Step(original, (key,)))
    return steps


def _split_keys(keys: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Release keys -> (InternVL's, SAM 2's, SeC parts') by prefix."""
    parts = [k for k in keys if k.startswith((TEXT_FCS, GROUNDING + "token_attn."))]
    grounding = [k for k in keys if k.startswith(GROUNDING) and not k.startswith(GROUNDING + "token_attn.")]
    lvlm = [k for k in keys if not k.startswith((GROUNDING, TEXT_FCS))]
    return lvlm, grounding, parts


def plan_from_release(keys: list[str], sam2_config: Sam2VideoConfig) -> tuple[list[Step], ...]:
    """Steps from the release's keys to (`lvlm/`, `sam2/`, SeC parts) of a model directory."""
    lvlm_keys, grounding_keys, part_keys = _split_keys(keys)
    return (
        internvl.plan_from_original(lvlm_keys),
        sam2.plan_from_original(grounding_keys, sam2_config, GROUNDING, SEC_LAYER_SCALE),
        plan_parts_from_original(part_keys),
    )


def parts_shapes(lvlm_config: InternVLConfig, sam2_config: Sam2VideoConfig) -> dict[str, torch.Size]:
    """The SeC parts' keys and shapes: `token_attn` is shaped like SAM 2's memory attention."""
    hidden = lvlm_config.text_config.hidden_size
    memory = "memory_attention."
    shapes = {
        "token_attn." + key.removeprefix(memory): shape
        for key, shape in sam2.sam2_shapes(sam2_config).items()
        if key.startswith(memory)
    }
    return shapes | {
        "text_hidden_fcs.0.weight": torch.Size([hidden, hidden]),
        "text_hidden_fcs.0.bias": torch.Size([hidden]),
        "text_hidden_fcs.2.weight": torch.Size([CONCEPT_DIM, hidden]),
        "text_hidden_fcs.2.bias": torch.Size([CONCEPT_DIM]),
    }


class _Collector(dict):
    """A `ShardWriter` stand-in for the small parts file, written whole by `save_file`."""

    def add(self, name: str, tensor: torch.Tensor) -> None:
        self[name] = tensor.detach().clone(memory_format=torch.contiguous_format)


def import_sec(src: str | Path, out: str | Path, sam2_config: Sam2VideoConfig | None = None) -> None:
    """Converts the released SeC-4B directory into a framework model directory.

    Args:
        src (`str` or `Path`): config.json, safetensors shards (+ index) and tokenizer files.
        out (`str` or `Path`): a new model directory (`lvlm/`, `sam2/`, `sec_parts.safetensors`,
            `sec_config.json`) for `ModelConfig(init=out)`.
        sam2_config (`Sam2VideoConfig`, *optional*): the grounding encoder's architecture;
            detected for SAM 2.1 Hiera-L (the release's).

    Raises:
        `ValueError` listing missing and unexpected keys (every source key must be used).
    """
    raw, lvlm_config, source, tokenizer = internvl.read_original(src)
    if sam2_config is None:
        sam2_config = sam2.detect_sam2_config(source, GROUNDING)
    else:
        sam2_config.num_maskmem = raw.get("grounding_maskmem_num", SEC_MASKMEM)
    lvlm_steps, sam2_steps, part_steps = plan_from_release(source.keys(), sam2_config)
    problems = (
        plan_problems(lvlm_steps + sam2_steps + part_steps, source.keys())
        + plan_problems(lvlm_steps, expected=internvl.lvlm_shapes(lvlm_config))
        + plan_problems(sam2_steps, expected=sam2.sam2_shapes(sam2_config))
        + plan_problems(part_steps, expected=parts_shapes(lvlm_config, sam2_config))
    )
    if problems:
        raise ValueError(f"{source.name}: cannot convert:{problems}")
    out = fresh_output(out)
    internvl.write_lvlm(source, lvlm_steps, lvlm_config, tokenizer, out / "lvlm")
    sam2.write_sam2(source, sam2_steps, sam2_config, out / "sam2", None)
    parts = _Collector()
    run_plan(part_steps, source, parts, parts_shapes(lvlm_config, sam2_config), desc="SeC parts")
    save_file(dict(parts), str(out / PARTS_FILE))
    cfg = ModelConfig(
        mode="fused", lvlm=str(out / "lvlm"), sam2=str(out / "sam2"), num_maskmem=sam2_config.num_maskmem
    )
    save_model_config(cfg, out)


def _release_config(
    lvlm_config: InternVLConfig, sam2_config: Sam2VideoConfig, reference: Path | None
) -> dict:
    """SeC-4B's config.json for these configs; a reference release's own entries are kept."""
    ours = internvl.config_to_original(lvlm_config) | {
        "grounding_maskmem_num": sam2_config.num_maskmem,
        "tie_word_embeddings": False,
    }
    if reference is None:
        return {**ours, **_RELEASE_DEFAULTS}
    shape_keys = (
        "vision_config",
        "llm_config",
        "downsample_ratio",
        "force_image_size",
        "grounding_maskmem_num",
    )
    return json.loads((reference / "config.json").read_text()) | {k: ours[k] for k in shape_keys}


# what SeC's convert_to_hf.py writes besides the InternVL entries
_RELEASE_DEFAULTS = {
    "architectures": ["SeCModel"],
    "model_type": "sec",
    "auto_map": {
        "AutoConfig": "configuration_sec.SeCConfig",
        "AutoModel": "modeling_sec.SeCModel",
        "AutoModelForCausalLM": "modeling_sec.SeCModel",
    },
    "template": "qwen_chat",
    "grounding_encoder_config": "sec_sam2.1_hiera_l.yaml",
    "use_backbone_lora": 0,
    "use_llm_lora": 0,
}


def _export_model_dir(model_dir: Path, out: Path, reference: Path | None, dtype: torch.dtype | None) -> None:
    for needed in (CONFIG_FILE, "lvlm", "sam2", PARTS_FILE):
        if not (model_dir / needed).exists():
            raise FileNotFoundError(f"{model_dir} is not a SeC model directory: {needed} is missing")
    lvlm_config = InternVLConfig.from_pretrained(str(model_dir / "lvlm"))
    sam2_config = Sam2VideoConfig.from_pretrained(str(model_dir / "sam2"))
    lvlm_src = TensorSource.from_safetensors(model_dir / "lvlm")
    lvlm_steps = internvl.plan_to_original(lvlm_src.keys())
    sam2_src = TensorSource.from_safetensors(model_dir / "sam2")
    parts_src = TensorSource.from_safetensors(model_dir / PARTS_FILE)
    plans = [
        (lvlm_src, lvlm_steps),
        (sam2_src, sam2.plan_to_original(sam2_src.keys(), sam2_config, GROUNDING, SEC_LAYER_SCALE)),
        (parts_src, plan_parts_to_original(parts_src.keys())),
    ]
    problems = ""
    for src, steps in plans:
        if found := plan_problems(steps, src.keys()):
            problems += f"\n {src.name}:{found}"
    problems += plan_problems([step for _, steps in plans for step in steps])
    if problems:
        raise ValueError(f"{model_dir}: cannot export:{problems}")
    out = fresh_output(out)
    with ShardWriter(out, dtype=dtype) as writer:
        for src, steps in plans:
            run_plan(steps, src, writer, desc=f"export {Path(src.name).name}")
    config = _release_config(lvlm_config, sam2_config, reference)
    if dtype is not None:
        config["torch_dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    load_tokenizer(model_dir / "lvlm").save_pretrained(str(out))
    if reference is not None:  # the release's remote code (modeling_sec.py, ...) next to the weights
        for code in reference.glob("*.py"):
            shutil.copy2(code, out / code.name)


def export_sec(
    checkpoint: str | Path,
    out: str | Path,
    reference: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Writes a framework checkpoint in SeC-4B's released layout (shards + index, LoRA merged).

    Args:
        checkpoint (`str` or `Path`): a model directory (`save_model_dir`) or a trainable-only
            checkpoint (`save_trainable`), which is first rebuilt over its base and merged.
        out (`str` or `Path`): a new directory: safetensors shards, index, config.json, tokenizer.
        reference (`str` or `Path`, *optional*): the original SeC-4B download; its config.json
            entries and remote-code `*.py` files are carried over, so its loader reads the export.
        dtype (`torch.dtype`, *optional*): cast floating-point tensors (the release is bfloat16).
    """
    checkpoint, reference = Path(checkpoint), Path(reference) if reference is not None else None
    if not (checkpoint / TRAINABLE_FILE).is_file():
        _export_model_dir(checkpoint, Path(out), reference, dtype)
        return
    # a trainable-only checkpoint: rebuild it over its base, merge LoRA, then export that
    model = build_sec_model(dataclasses.replace(load_model_config(checkpoint), init=str(checkpoint)))
    with tempfile.TemporaryDirectory() as tmp:
        save_model_dir(model, tmp)
        del model
        _export_model_dir(Path(tmp), Path(out), reference, dtype)
