"""The trainable policy: exactly the configured parameters train, and gradients reach only them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from sec_train.model.build import build_sec_model
from sec_train.model.config import LoraConfig, ModelConfig, TrainableConfig
from sec_train.model.trainable import SAM2_PARTS, SAM2_UNUSED, apply_trainable
from sec_train.train.config import load_config
from tests.sec_toy_batches import single_thread, stage1_batch, stage2_batch  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

LORA = LoraConfig(r=4, alpha=8, dropout=0.0)
EMBEDDINGS = {"lvlm.model.language_model.embed_tokens.weight", "lvlm.lm_head.weight"}
PROJECTOR = "lvlm.model.multi_modal_projector."
ROOT = Path(__file__).resolve().parents[1]


def _names(model, prefixes: tuple[str, ...]) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


def _sam2_part(model, part: str) -> set[str]:
    return _names(model, tuple(f"sam2.{attribute}" for attribute in SAM2_PARTS[part]))


def _lora(model) -> set[str]:
    return {n for n, _ in model.named_parameters() if ".lora_" in n}


def test_default_policy_is_the_released_stage2_recipe():
    model = build_sec_model(ModelConfig())
    trained = set(apply_trainable(model, TrainableConfig(lora=LORA)))
    lora = _lora(model)
    assert lora and all(".language_model." in n for n in lora)
    # 2 layers x 7 projections x (A, B)
    assert len(lora) == 2 * 7 * 2
    # the official stage 2 also trains InternVL's projector `mlp1` (xtuner freezes only the LLM
    # and the ViT: xtuner/model/internvl.py:91-94; SeC saves it: training/sec/models/sec.py:144-150)
    assert trained == lora | EMBEDDINGS | _names(model, (PROJECTOR, "text_hidden_fcs."))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trained
    assert len(_names(model, (PROJECTOR,))) == 6  # layer norm, linear 1, linear 2


def _recipe_trains(recipe: str):
    """(trained names, model): a real recipe's trainable policy on the toy model (small LoRA)."""
    cfg = load_config(str(ROOT / "configs" / recipe))
    model = build_sec_model(ModelConfig(mode=cfg.model.mode))
    policy = cfg.model.trainable
    policy.lora = LoraConfig(r=4, alpha=8) if policy.lora.r else LoraConfig(r=0)
    return set(apply_trainable(model, policy)), model


def test_real_recipes_train_what_the_official_runs_train():
    # stage 1: memory attention and, with the 22-slot bank, the temporal encodings
    # (training/sam2/training/model/sam2.py:109-116)
    trained, model = _recipe_trains("sec_stage1.yaml")
    assert trained == _sam2_part(model, "memory_attention") | {"sam2.memory_temporal_positional_encoding"}
    trained, model = _recipe_trains("sec_stage2.yaml")
    assert trained == _lora(model) | EMBEDDINGS | _names(model, (PROJECTOR, "text_hidden_fcs."))


def test_lora_off_vit_lora_and_bad_combination():
    model = build_sec_model(ModelConfig())
    policy = TrainableConfig(lora=LoraConfig(r=0), embeddings=False, projector=False)
    trained = set(apply_trainable(model, policy))
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    assert trained == _names(model, ("text_hidden_fcs.",))

    model = build_sec_model(ModelConfig())
    apply_trainable(
        model, TrainableConfig(lora=LoraConfig(r=4, alpha=8, targets=["q_proj", "v_proj"]), vit="lora")
    )
    vit_lora = {n for n in _lora(model) if ".vision_tower." in n}
    llm_lora = {n for n in _lora(model) if ".language_model." in n}
    assert len(vit_lora) == 2 * 6 * 2  # q, k, v, projection_layer, fc1, fc2 in both ViT layers
    assert len(llm_lora) == 2 * 2 * 2 and all("q_proj" in n or "v_proj" in n for n in llm_lora)

    with pytest.raises(ValueError, match="lora.r > 0"):
        apply_trainable(build_sec_model(ModelConfig()), TrainableConfig(lora=LoraConfig(r=0), vit="lora"))


def test_an_existing_adapter_is_kept_frozen_or_rejected():
    model = build_sec_model(ModelConfig())
    apply_trainable(model, TrainableConfig(lora=LORA))
    lora = _lora(model)
    # the same LoRA again (resuming): kept, still trained
    assert lora <= set(apply_trainable(model, TrainableConfig(lora=LORA)))
    assert _lora(model) == lora
    # r = 0: the adapter stays but is frozen
    assert not lora & set(apply_trainable(model, TrainableConfig(lora=LoraConfig(r=0))))
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_trainable(model, TrainableConfig(lora=LoraConfig(r=16, alpha=32)))


@pytest.mark.parametrize("part", sorted(SAM2_PARTS))
def test_each_sam2_part_switches_on_alone(part):
    model = build_sec_model(ModelConfig(mode="stage1"))
    policy = TrainableConfig(
        lora=LoraConfig(r=0), embeddings=False, projector=False, text_hidden_fcs=False, **{part: True}
    )
    trained = set(apply_trainable(model, policy))
    assert trained and trained == _sam2_part(model, part)


def test_sam2_parts_cover_every_used_sam2_parameter_once():
    model = build_sec_model(ModelConfig())
    parts = [_sam2_part(model, part) for part in SAM2_PARTS]
    unused = _names(model, tuple(f"sam2.{a}" for a in SAM2_UNUSED))
    assert set.union(*parts) | unused == _names(model, ("sam2.",))
    assert sum(len(p) for p in parts) + len(unused) == len(_names(model, ("sam2.",)))


RECIPES = {
    # stage 1: the memory attention and its temporal encodings
    "stage1": TrainableConfig(
        lora=LoraConfig(r=0),
        embeddings=False,
        projector=False,
        text_hidden_fcs=False,
        memory_attention=True,
        memory_temporal_encoding=True,
    ),
    # stage 2 as released: LoRA, embeddings, the projector, text_hidden_fcs
    "concept_only": TrainableConfig(lora=LORA),
    # ... with LoRA on the ViT as well
    "concept_only_vit_lora": TrainableConfig(lora=LORA, vit="lora"),
    # stage 2 joint: also token_attn, the mask decoder and SAM 2's memory modules
    "fused": TrainableConfig(
        lora=LORA,
        token_attn=True,
        mask_decoder=True,
        memory_attention=True,
        memory_encoder=True,
        memory_temporal_encoding=True,
    ),
}


def _groups(name: str) -> str:
    """The part a parameter belongs to, for per-part gradient checks."""
    if ".lora_" in name:
        return "lora"
    if name.startswith("sam2."):
        return next(part for part, attrs in SAM2_PARTS.items() if name.split(".")[1] in attrs)
    if name.startswith(PROJECTOR):
        return "projector"
    return name.split(".")[0] if not name.startswith("lvlm.") else "embeddings"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_gradients_reach_exactly_the_trainable_parameters(name):
    recipe, mode = RECIPES[name], name.removesuffix("_vit_lora")
    model = build_sec_model(ModelConfig(mode=mode, stage1_tracked_frames=2))
    trained = set(apply_trainable(model, recipe))
    model.train()
    batch = stage1_batch(model, frames=3) if mode == "stage1" else stage2_batch(model)
    torch.manual_seed(0)
    model(batch)["loss"].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trained
    # every trained part moves (LoRA A alone has a zero gradient while B is zero at init)
    norms: dict[str, float] = {}
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
            norms[_groups(name)] = norms.get(_groups(name), 0.0) + float(param.grad.norm())
    assert all(norm > 0 for norm in norms.values()), norms
    expected_parts = {
        "stage1": {"memory_attention", "memory_temporal_encoding"},
        "concept_only": {"lora", "embeddings", "projector", "text_hidden_fcs"},
        "fused": {
            "lora",
            "embeddings",
            "projector",
            "text_hidden_fcs",
            "token_attn",
            "mask_decoder",
            "memory_attention",
            "memory_encoder",
            "memory_temporal_encoding",
        },
    }[mode]
    assert set(norms) == expected_parts
    assert any(".vision_tower." in n for n in with_grad) == (recipe.vit == "lora")
