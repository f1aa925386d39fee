"""`init_from` carries a checkpoint's weights into a new run, and the run's own checkpoints
reload on top of it (a stage-2 checkpoint holds only what stage 2 trains)."""

import dataclasses

import pytest
import torch

from sec_train.model.config import ModelConfig, TrainableConfig
from sec_train.model.sec import build_sec_model
from sec_train.model.trainable import apply_trainable
from sec_train.model.weights import save_trainable
from sec_train.train.config import TrainConfig
from sec_train.train.loop import build_model


def _stage1_checkpoint(directory) -> dict[str, torch.Tensor]:
    """A stage-1 checkpoint whose memory attention differs from the toy base; returns it."""
    model = build_sec_model(ModelConfig(mode="stage1"))
    apply_trainable(
        model,
        TrainableConfig(
            lora=dataclasses.replace(TrainableConfig().lora, r=0),
            embeddings=False,
            text_hidden_fcs=False,
            memory_attention=True,
        ),
    )
    with torch.no_grad():
        for p in model.sam2.memory_attention.parameters():
            p.add_(0.5)
    save_trainable(model, directory)
    return {k: v.clone() for k, v in model.sam2.memory_attention.state_dict().items()}


def test_stage2_checkpoint_reloads_the_stage1_weights_it_started_from(tmp_path):
    stage1 = _stage1_checkpoint(tmp_path / "stage1")
    cfg = TrainConfig(model=ModelConfig(mode="concept_only"), init_from=str(tmp_path / "stage1"))
    model = build_model(cfg)
    assert model.config.mode == "concept_only"
    for key, value in model.sam2.memory_attention.state_dict().items():
        torch.testing.assert_close(value, stage1[key], rtol=0, atol=0)
    # token_attn is initialised from the memory attention stage 1 trained, not the base's
    for key, value in model.token_attn.state_dict().items():
        torch.testing.assert_close(value, stage1[key], rtol=0, atol=0)

    save_trainable(model, tmp_path / "stage2")
    reloaded = build_sec_model(ModelConfig(init=str(tmp_path / "stage2")))
    for key, value in reloaded.sam2.memory_attention.state_dict().items():
        torch.testing.assert_close(value, stage1[key], rtol=0, atol=0)
    lora = {k: v for k, v in model.lvlm.state_dict().items() if ".lora_" in k}
    assert lora, "stage 2 trains LoRA"
    reloaded_state = reloaded.lvlm.state_dict()
    for key, value in lora.items():
        torch.testing.assert_close(reloaded_state[key], value, rtol=0, atol=0)


def test_init_from_and_model_init_together_is_an_error(tmp_path):
    cfg = TrainConfig(model=ModelConfig(init="a"), init_from="b")
    with pytest.raises(ValueError, match="init_from or model.init"):
        build_model(cfg)
