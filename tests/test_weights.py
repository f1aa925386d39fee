"""Trainable-only checkpoints and merged model directories: what is saved reloads exactly."""

from __future__ import annotations

import json

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from sec_train.model.build import build_sec_model, load_trainable
from sec_train.model.config import LoraConfig, ModelConfig, TrainableConfig
from sec_train.model.trainable import apply_trainable
from sec_train.model.weights import (
    load_model_config,
    merged_lvlm_state_dict,
    save_model_dir,
    save_trainable,
)
from tests.sec_toy_batches import single_thread, stage2_batch  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

POLICY = TrainableConfig(lora=LoraConfig(r=4, alpha=8, dropout=0.0), token_attn=True, mask_decoder=True)


def _trained_model(mode: str = "concept_only"):
    """A toy SeC whose trainable weights (LoRA B included, zero at init) moved off their init."""
    model = build_sec_model(ModelConfig(mode=mode, trainable=POLICY))
    apply_trainable(model, POLICY)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


def _outputs(model, batch) -> list[torch.Tensor]:
    with torch.no_grad():
        concept = model.concept_embedding(
            batch.lvlm_images, batch.input_ids, batch.attention_mask, batch.lvlm_frames_per_sample
        )
        targets = model._target_outputs(batch, concept)
    return [concept, targets.multimask_logits, targets.object_score_logits]


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = 0.0) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=atol)


def test_trainable_checkpoint_reloads_on_a_fresh_base(tmp_path):
    model = _trained_model()
    batch = stage2_batch(model)
    save_trainable(model, tmp_path)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "sec_config.json").read_text())["mode"] == "concept_only"
    # LoRA goes to the adapter only; every other trained parameter to trainable.safetensors
    saved = load_file(str(tmp_path / "trainable.safetensors"))
    assert not any(".lora_" in k for k in saved)
    assert {k.split(".")[0] for k in saved} == {"lvlm", "text_hidden_fcs", "token_attn", "sam2"}
    projector = {k for k in saved if k.startswith("lvlm.model.multi_modal_projector.")}
    assert len(projector) == 6  # trained by default, as the official stage 2 trains mlp1

    expected = _outputs(model, batch)
    fresh = build_sec_model(ModelConfig(mode="concept_only"))
    assert fresh.lora_config is None
    load_trainable(fresh, tmp_path)  # injects LoRA from the adapter config
    _assert_same(expected, _outputs(fresh, batch))

    # resuming: the policy is applied first, then the checkpoint loads into the existing adapter
    resumed = build_sec_model(ModelConfig(mode="concept_only"))
    apply_trainable(resumed, POLICY)
    load_trainable(resumed, tmp_path)
    _assert_same(expected, _outputs(resumed, batch))

    # and as `model.init`, on top of the base its sec_config.json names
    from_init = build_sec_model(ModelConfig(mode="concept_only", init=str(tmp_path)))
    _assert_same(expected, _outputs(from_init, batch))


def test_model_dir_merges_lora_and_reloads_identically(tmp_path):
    model = _trained_model("fused")
    batch = stage2_batch(model)
    save_model_dir(model, tmp_path)
    files = (
        "sec_config.json",
        "lvlm/config.json",
        "lvlm/tokenizer.json",
        "sam2/config.json",
        "sec_parts.safetensors",
    )
    for name in files:
        assert (tmp_path / name).is_file(), name
    reloaded = build_sec_model(ModelConfig(mode="fused", init=str(tmp_path)))
    assert not any(isinstance(m, BaseTunerLayer) for m in reloaded.lvlm.modules())
    # merged weights are base + B A * alpha / r, so outputs agree to float32 rounding
    _assert_same(_outputs(model, batch), _outputs(reloaded, batch), atol=1e-5)
    # the live model keeps its adapter
    assert any(isinstance(m, BaseTunerLayer) for m in model.lvlm.modules())


def test_merged_state_dict_is_base_plus_scaled_lora():
    model = _trained_model()
    merged = merged_lvlm_state_dict(model.lvlm)
    layer = model.lvlm.model.language_model.layers[0].self_attn.q_proj
    expected = layer.base_layer.weight + layer.lora_B["default"].weight @ layer.lora_A["default"].weight * (
        8 / 4
    )
    torch.testing.assert_close(merged["model.language_model.layers.0.self_attn.q_proj.weight"], expected)
    assert not any(".lora_" in k or "base_layer" in k for k in merged)


def test_model_config_roundtrip_and_errors(tmp_path):
    model = _trained_model()
    save_trainable(model, tmp_path)
    assert load_model_config(tmp_path) == model.config
    with pytest.raises(FileNotFoundError, match="sec_config.json"):
        load_model_config(tmp_path / "nowhere")
    (tmp_path / "sec_config.json").write_text(json.dumps({"mode": "fused", "colour": "green"}))
    with pytest.raises(ValueError, match="colour"):
        load_model_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="trainable.safetensors"):
        load_trainable(model, tmp_path / "nowhere")


def test_checkpoint_that_does_not_fit_is_rejected(tmp_path):
    model = _trained_model()
    save_trainable(model, tmp_path)
    other = build_sec_model(ModelConfig(mode="concept_only"))
    apply_trainable(other, TrainableConfig(lora=LoraConfig(r=4, alpha=8, targets=["q_proj"])))
    with pytest.raises(ValueError, match="adapter does not fit"):
        load_trainable(other, tmp_path)


def test_memory_size_and_hf_dirs_from_a_model_dir(tmp_path):
    model = build_sec_model(ModelConfig(num_maskmem=9))
    save_model_dir(model, tmp_path)
    # null keeps the saved memory bank; a number resizes it
    assert build_sec_model(ModelConfig(init=str(tmp_path))).sam2.num_maskmem == 9
    assert build_sec_model(ModelConfig(init=str(tmp_path), num_maskmem=22)).sam2.num_maskmem == 22
    # the lvlm/ and sam2/ sub-directories are plain HF directories for `lvlm:` / `sam2:`
    parts = build_sec_model(ModelConfig(lvlm=str(tmp_path / "lvlm"), sam2=str(tmp_path / "sam2")))
    assert parts.sam2.num_maskmem == 9
    for name, tensor in model.state_dict().items():
        if name.startswith(("lvlm.", "sam2.")):
            assert torch.equal(tensor, parts.state_dict()[name]), name
    with pytest.raises(FileNotFoundError, match="sec_parts.safetensors"):
        (tmp_path / "sec_parts.safetensors").unlink()
        build_sec_model(ModelConfig(init=str(tmp_path)))
