"""Saving and loading SeC weights in the two directory layouts of the project.

Trainable-only checkpoint (written during training, small)::

    DIR/sec_config.json          the ModelConfig, so the base model can be rebuilt
    DIR/trainable.safetensors    trained non-LoRA parameters, SeCModel state-dict names
    DIR/adapter/                 the peft adapter (adapter_config.json, adapter_model.safetensors)

Model directory (full and standalone; LoRA merged into the LLM)::

    DIR/sec_config.json          the ModelConfig
    DIR/lvlm/                    InternVLForConditionalGeneration.save_pretrained + tokenizer files
    DIR/sam2/                    Sam2VideoModel.save_pretrained
    DIR/sec_parts.safetensors    text_hidden_fcs.*, token_attn.*

File I/O only: the savers take a `SeCModel` (attributes `config`, `lvlm`, `sam2`, `tokenizer`,
`text_hidden_fcs`, `token_attn`, `lora_config`); the readers return tensors and configs, which
`sec_train.model.build` puts into a model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import InternVLForConditionalGeneration, PreTrainedTokenizerBase, Sam2VideoModel

from sec_train.model.config import ModelConfig
from sec_train.model.lvlm import load_lvlm
from sec_train.model.trainable import ADAPTER_NAME
from sec_train.schema import ConfigError, from_dict

CONFIG_FILE = "sec_config.json"
TRAINABLE_FILE = "trainable.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PREFIX = "base_model.model."  # peft's key prefix in adapter files
PARTS_FILE = "sec_parts.safetensors"
SEC_PARTS = ("text_hidden_fcs", "token_attn")


def save_model_config(cfg: ModelConfig, directory: str | Path) -> None:
    """Writes `cfg` as `DIR/sec_config.json`."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")


def load_model_config(directory: str | Path) -> ModelConfig:
    """Reads `DIR/sec_config.json` back into a `ModelConfig`, through the same checks as a recipe.

    Raises:
        FileNotFoundError: the file is missing.
        ConfigError: it is not JSON, or has an unknown key or a bad value (named with the file).
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a SeC directory: {CONFIG_FILE} is missing")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not JSON: {err}") from err
    return from_dict(ModelConfig, raw, str(path))


def _cpu_contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}


def adapter_state_dict(lvlm: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors of `lvlm` under peft's file names ("base_model.model.<module>.lora_A.weight")."""
    tag = f".{ADAPTER_NAME}."
    return {
        ADAPTER_PREFIX + name.replace(tag, "."): t
        for name, t in lvlm.state_dict().items()
        if ".lora_" in name
    }


def save_trainable(model: nn.Module, directory: str | Path) -> None:
    """Writes the trainable-only checkpoint: config, trained non-LoRA params, and the adapter.

    Args:
        model (`SeCModel`): its parameters with `requires_grad` are saved; LoRA ones go to the
            peft adapter, the others to `trainable.safetensors` under their SeCModel names.
        directory (`str` or `Path`): created if missing.
    """
    directory = Path(directory)
    save_model_config(model.config, directory)
    trained = {
        name: param
        for name, param in model.named_parameters()
        if param.requires_grad and ".lora_" not in name
    }
    save_file(_cpu_contiguous(trained), str(directory / TRAINABLE_FILE))
    if model.lora_config is not None:
        model.lora_config.save_pretrained(str(directory / ADAPTER_DIR))
        save_file(
            _cpu_contiguous(adapter_state_dict(model.lvlm)), str(directory / ADAPTER_DIR / ADAPTER_WEIGHTS)
        )


def read_adapter(adapter_dir: Path) -> tuple[PeftLoraConfig, dict[str, torch.Tensor]]:
    """A saved adapter's peft config and tensors, the tensors under the live model's names
    ("...lora_A.default.weight")."""
    state = {
        re.sub(r"\.(lora_[AB])\.", rf".\1.{ADAPTER_NAME}.", name.removeprefix(ADAPTER_PREFIX)): t
        for name, t in load_file(str(adapter_dir / ADAPTER_WEIGHTS)).items()
    }
    return PeftLoraConfig.from_pretrained(str(adapter_dir)), state


def read_trainable(directory: str | Path) -> tuple[dict[str, torch.Tensor], Path | None]:
    """A trainable checkpoint's non-LoRA tensors (SeCModel names) and its adapter directory
    (None when it has no LoRA)."""
    path, adapter = _trainable_files(directory)
    return load_file(str(path)), adapter


def trainable_names(directory: str | Path) -> tuple[list[str], Path | None]:
    """`read_trainable`'s tensor names, read from the file's header without loading a tensor."""
    path, adapter = _trainable_files(directory)
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys()), adapter


def _trainable_files(directory: str | Path) -> tuple[Path, Path | None]:
    directory = Path(directory)
    path = directory / TRAINABLE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a trainable checkpoint: {TRAINABLE_FILE} is missing")
    adapter = directory / ADAPTER_DIR
    return path, adapter if adapter.is_dir() else None


def merged_lvlm_state_dict(lvlm: nn.Module) -> dict[str, torch.Tensor]:
    """The LVLM's state dict with LoRA merged into the base weights, under the plain model's names.

    Computed out of place (base + delta), so the live model keeps its adapter unchanged.
    """
    state = lvlm.state_dict()
    merged = {k.replace(".base_layer.", "."): v for k, v in state.items() if ".lora_" not in k}
    for name, module in lvlm.named_modules():
        if isinstance(module, BaseTunerLayer) and ADAPTER_NAME in module.lora_A:
            base = module.get_base_layer().weight
            delta = module.get_delta_weight(ADAPTER_NAME).to(base.dtype)
            merged[f"{name}.weight"] = base.detach() + delta.detach()
    return merged


def merged_lvlm(lvlm: InternVLForConditionalGeneration) -> InternVLForConditionalGeneration:
    """A plain `InternVLForConditionalGeneration` holding `lvlm`'s weights with LoRA merged."""
    if not any(isinstance(m, BaseTunerLayer) for m in lvlm.modules()):
        return lvlm
    with torch.device("meta"):
        plain = InternVLForConditionalGeneration(lvlm.config)
    plain.load_state_dict(merged_lvlm_state_dict(lvlm), strict=True, assign=True)
    plain.tie_weights()
    return plain.eval()


def save_model_dir(model: nn.Module, directory: str | Path) -> None:
    """Writes a standalone model directory that `build_sec_model(ModelConfig(init=DIR))` reloads.

    Args:
        model (`SeCModel`): saved as is; LoRA is merged into the written LLM weights only.
        directory (`str` or `Path`): created if missing.
    """
    directory = Path(directory)
    save_model_config(model.config, directory)
    merged_lvlm(model.lvlm).save_pretrained(str(directory / "lvlm"))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(directory / "lvlm"))
    model.sam2.save_pretrained(str(directory / "sam2"))
    parts = {name: t for name, t in model.state_dict().items() if name.split(".")[0] in SEC_PARTS}
    save_file(_cpu_contiguous(parts), str(directory / PARTS_FILE))


def read_model_dir(
    directory: str | Path,
) -> tuple[
    InternVLForConditionalGeneration, PreTrainedTokenizerBase, Sam2VideoModel, dict[str, torch.Tensor]
]:
    """Reads a model directory: the LVLM and its tokenizer, SAM 2, and the SeC parts' tensors."""
    directory = Path(directory)
    for needed in (CONFIG_FILE, "lvlm", "sam2", PARTS_FILE):
        if not (directory / needed).exists():
            raise FileNotFoundError(f"{directory} is not a SeC model directory: {needed} is missing")
    lvlm, tokenizer = load_lvlm(directory / "lvlm")
    sam2 = Sam2VideoModel.from_pretrained(str(directory / "sam2")).eval()
    return lvlm, tokenizer, sam2, load_file(str(directory / PARTS_FILE))
