"""Where a SeC model's weights come from: the one place that turns a `ModelConfig` into weights.

`ModelConfig.init` is the only "start from these weights" key. Following it:

1. `init` unset: build from `lvlm` / `sam2` ("toy", "real" shapes or HF-format directories);
   `text_hidden_fcs` is fresh and `token_attn` a copy of SAM 2's memory attention.
2. `init` a model directory (`save_model_dir`): the LVLM, SAM 2 and the SeC parts it holds.
3. `init` a trainable checkpoint (`save_trainable`): first its own base, rebuilt from the
   `sec_config.json` it holds (recursively: a stage-2 checkpoint names stage 1's, which names
   the pretrained directories), then its trained tensors on top, injecting its LoRA adapter.
   When it trained SAM 2's memory attention but not `token_attn` (stage 1), `token_attn`
   becomes a copy of that trained memory attention (`token_attn_init="memory_attention"`,
   SeC's rule, logged) or keeps the base's (`"base"`). `init_lvlm` puts another LVLM in the
   base's place when the checkpoint trained none of it.

The trainer then applies the trainable policy (`build_trainable_model`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from transformers import InternVLForConditionalGeneration, PreTrainedTokenizerBase

from sec_train.model.config import ModelConfig
from sec_train.model.lvlm import TOY_SIZES, build_real_lvlm_meta, build_toy_lvlm, load_lvlm
from sec_train.model.sam2 import build_sam2, set_multimask_tracking, set_num_maskmem
from sec_train.model.sec import SeCModel
from sec_train.model.trainable import apply_trainable, inject_lora
from sec_train.model.weights import (
    PARTS_FILE,
    SEC_PARTS,
    TRAINABLE_FILE,
    load_model_config,
    read_adapter,
    read_model_dir,
    read_trainable,
    trainable_names,
)

logger = logging.getLogger(__name__)


def build_trainable_model(cfg: ModelConfig) -> SeCModel:
    """The recipe's model with its trainable policy applied, in train mode (what the trainer runs)."""
    model = build_sec_model(cfg)
    apply_trainable(model, cfg.trainable)
    return model.train()


def build_sec_model(cfg: ModelConfig) -> SeCModel:
    """Builds SeC from a `ModelConfig`, in eval mode, with no trainable policy applied.

    Args:
        cfg (`ModelConfig`): `cfg.init` (a model directory or a trainable checkpoint) wins over
            `cfg.lvlm` / `cfg.sam2`; `cfg.num_maskmem`, when set, resizes SAM 2's memory bank,
            and `cfg.multimask_tracking`, when set, says how many masks tracked frames get.

    Returns:
        `SeCModel`, deterministic for random parts (seed 0); `model.config` is `cfg`.
    """
    if cfg.init is not None:
        return _from_init(cfg).eval()
    # Seeded so a toy base (and fresh text_hidden_fcs) is the same in every process and run: a
    # trainable checkpoint over "toy" reloads exactly. The caller's RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lvlm, tokenizer = _build_lvlm(cfg.lvlm)
        sam2 = build_sam2(cfg.sam2, cfg.num_maskmem)
        set_multimask_tracking(sam2, cfg.multimask_tracking)
        return SeCModel(cfg, lvlm, tokenizer, sam2).eval()


def _build_lvlm(source: str) -> tuple[InternVLForConditionalGeneration, PreTrainedTokenizerBase | None]:
    if source in TOY_SIZES:
        return build_toy_lvlm(source)
    if source == "real":
        return build_real_lvlm_meta(), None
    return load_lvlm(source)


def _from_init(cfg: ModelConfig) -> SeCModel:
    """Rebuilds from `cfg.init`: a trainable checkpoint over its base, or a model directory."""
    init = Path(cfg.init)
    if (init / TRAINABLE_FILE).is_file():
        saved = load_model_config(init)
        multimask = saved.multimask_tracking if cfg.multimask_tracking is None else cfg.multimask_tracking
        if cfg.init_lvlm is not None:
            _check_lvlm_untrained(init)
        # the checkpoint's base as the checkpoint's own run built it
        base_cfg = dataclasses.replace(
            cfg,
            lvlm=cfg.init_lvlm or saved.lvlm,
            sam2=saved.sam2,
            init=saved.init,
            init_lvlm=cfg.init_lvlm or saved.init_lvlm,  # down a chain of inits to the first base
            token_attn_init=saved.token_attn_init,
            num_maskmem=cfg.num_maskmem or saved.num_maskmem,
            multimask_tracking=multimask,
        )
        model = build_sec_model(base_cfg)
        load_trainable(model, init, cfg.token_attn_init)
        model.config = cfg
        return model
    if cfg.init_lvlm is not None:
        raise ValueError(f"model.init_lvlm needs model.init to be a trainable checkpoint; {init} is not one")
    return _from_model_dir(cfg, init)


def _check_lvlm_untrained(init: Path) -> None:
    """`init_lvlm` replaces the base's LVLM, so `init` must not hold LVLM weights it trained."""
    names, adapter_dir = trainable_names(init)
    trained = [k for k in names if k.startswith("lvlm.")]
    if adapter_dir is not None or trained:
        raise ValueError(
            f"model.init_lvlm: {init} trained the LVLM ({'LoRA' if adapter_dir else trained[0]}), so "
            "its LVLM cannot be replaced; start from the run that trained it without init_lvlm"
        )


def _from_model_dir(cfg: ModelConfig, directory: Path) -> SeCModel:
    lvlm, tokenizer, sam2, parts = read_model_dir(directory)
    if cfg.num_maskmem is not None and cfg.num_maskmem != sam2.num_maskmem:
        set_num_maskmem(sam2, cfg.num_maskmem)
    set_multimask_tracking(sam2, cfg.multimask_tracking)
    model = SeCModel(cfg, lvlm, tokenizer, sam2)
    expected = {k for k in model.state_dict() if k.split(".")[0] in SEC_PARTS}
    if set(parts) != expected:
        differing = sorted(set(parts) ^ expected)[:10]
        raise ValueError(
            f"{directory / PARTS_FILE} does not hold exactly the SeC parts: differs in {differing}"
        )
    model.load_state_dict(parts, strict=False)
    return model


def load_trainable(model: SeCModel, directory: str | Path, token_attn_init: str = "memory_attention") -> None:
    """Loads a trainable-only checkpoint on top of `model` (built from the base the config names).

    Args:
        model (`SeCModel`): changed in place. LoRA is injected from `adapter/adapter_config.json`
            when the model has none yet.
        directory (`str` or `Path`): written by `save_trainable`.
        token_attn_init (`str`): `ModelConfig.token_attn_init`; "memory_attention" copies a
            memory attention the checkpoint trained into `token_attn` when it did not train
            `token_attn` itself.
    """
    state, adapter_dir = read_trainable(directory)
    if adapter_dir is not None:
        load_adapter(model, adapter_dir)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{directory}: parameters not in the model: {result.unexpected_keys[:10]}")
    trained_memory_attention = any(k.startswith("sam2.memory_attention.") for k in state)
    trained_token_attn = any(k.startswith("token_attn.") for k in state)
    if token_attn_init == "memory_attention" and trained_memory_attention and not trained_token_attn:
        model.token_attn.load_state_dict(model.sam2.memory_attention.state_dict())
        logger.info(
            "token_attn <- memory_attention from %s (it trained the memory attention but not "
            "token_attn; model.token_attn_init=memory_attention)",
            directory,
        )


def load_adapter(model: SeCModel, adapter_dir: Path) -> None:
    """Loads a saved adapter into `model.lvlm`, injecting LoRA from its config if it has none."""
    peft_config, state = read_adapter(adapter_dir)
    if model.lora_config is None:
        inject_lora(model, peft_config)
    expected = {name for name in model.lvlm.state_dict() if ".lora_" in name}
    if set(state) != expected:
        differing = sorted(set(state) ^ expected)[:5]
        raise ValueError(f"{adapter_dir}: the adapter does not fit the model's LoRA layers: {differing}")
    model.lvlm.load_state_dict(state, strict=False)
