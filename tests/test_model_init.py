"""`model.init` carries a checkpoint's weights into a new run, and the run's own checkpoints
reload on top of it (a stage-2 checkpoint holds only what stage 2 trains); a stage-1
checkpoint hands its memory attention on to `token_attn`, as `model.token_attn_init` says."""

import dataclasses
import logging

import pytest
import torch

from sec_train.model.build import build_sec_model, build_trainable_model
from sec_train.model.config import ModelConfig, TrainableConfig
from sec_train.model.lvlm import build_toy_lvlm
from sec_train.model.sam2 import build_sam2, set_multimask_tracking
from sec_train.model.trainable import apply_trainable
from sec_train.model.weights import merged_lvlm_state_dict, save_trainable

STAGE1_TRAINABLE = TrainableConfig(
    lora=dataclasses.replace(TrainableConfig().lora, r=0),
    embeddings=False,
    projector=False,
    text_hidden_fcs=False,
    memory_attention=True,
)


def _stage1_checkpoint(directory) -> dict[str, torch.Tensor]:
    """A stage-1 checkpoint whose memory attention differs from the toy base; returns it."""
    model = build_sec_model(ModelConfig(mode="stage1"))
    apply_trainable(model, STAGE1_TRAINABLE)
    with torch.no_grad():
        for p in model.sam2.memory_attention.parameters():
            p.add_(0.5)
    save_trainable(model, directory)
    return {k: v.clone() for k, v in model.sam2.memory_attention.state_dict().items()}


def test_stage2_checkpoint_reloads_the_stage1_weights_it_started_from(tmp_path, caplog):
    stage1 = _stage1_checkpoint(tmp_path / "stage1")
    with caplog.at_level(logging.INFO, logger="sec_train.model.build"):
        model = build_trainable_model(ModelConfig(mode="concept_only", init=str(tmp_path / "stage1")))
    assert f"token_attn <- memory_attention from {tmp_path / 'stage1'}" in caplog.text
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


def test_token_attn_init_base_keeps_the_base_token_attn(tmp_path, caplog):
    stage1 = _stage1_checkpoint(tmp_path / "stage1")
    base = build_sec_model(ModelConfig()).token_attn.state_dict()
    with caplog.at_level(logging.INFO, logger="sec_train.model.build"):
        model = build_sec_model(ModelConfig(init=str(tmp_path / "stage1"), token_attn_init="base"))
    assert "token_attn <-" not in caplog.text
    for key, value in model.token_attn.state_dict().items():
        torch.testing.assert_close(value, base[key], rtol=0, atol=0)
        assert not torch.equal(value, stage1[key])


def _one_tracked_frame(model) -> torch.Tensor:
    """The mask logits [N, M, h, w] of a toy frame tracked from a prompted one: M masks."""
    tracker = model.tracker
    features = tracker.encode_frames(torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    state = tracker.init_state(num_objects=1, num_frames=2)
    prompt = torch.zeros(1, 128, 128)
    prompt[:, 32:96, 32:96] = 1
    tracker.track_frame(state, features.frame(0), 0, mask_prompt=prompt)
    return tracker.track_frame(state, features.frame(1), 1).multimask_logits


def test_multimask_tracking_is_set_by_the_run_and_carried_through_init(tmp_path):
    with torch.no_grad():
        assert _one_tracked_frame(build_sec_model(ModelConfig(mode="stage1"))).shape[1] == 3  # SAM 2.1's
        stage1 = build_sec_model(ModelConfig(mode="stage1", multimask_tracking=False))
        assert _one_tracked_frame(stage1).shape[1] == 1
    apply_trainable(
        stage1, TrainableConfig(lora=dataclasses.replace(TrainableConfig().lora, r=0), memory_attention=True)
    )
    save_trainable(stage1, tmp_path / "stage1")
    # a run on top that does not say keeps it, through its own checkpoint too; one that says wins
    stage2 = build_trainable_model(ModelConfig(mode="concept_only", init=str(tmp_path / "stage1")))
    save_trainable(stage2, tmp_path / "stage2")
    with torch.no_grad():
        assert _one_tracked_frame(build_sec_model(ModelConfig(init=str(tmp_path / "stage2")))).shape[1] == 1
        again = build_sec_model(ModelConfig(init=str(tmp_path / "stage1"), multimask_tracking=True))
        assert _one_tracked_frame(again).shape[1] == 3


def _decoder_masks(model, training: bool) -> torch.Tensor:
    """The single mask the heads give a random toy frame, in train or eval mode."""
    tracker = model.tracker
    features = tracker.encode_frames(torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1)))
    high_res = [tracker._to_map(x, level) for level, x in enumerate(features.levels[:-1])]
    model.train(training)
    out = tracker._sam_heads(tracker._to_map(features.levels[-1]), high_res, features.image_pe, False)
    model.eval()
    return out.mask_logits


def test_one_mask_tracking_keeps_token_0_at_inference():
    """One-mask training trains the decoder's output token 0 alone, so inference must not swap an
    unstable token-0 mask for the best of the 3 untrained multimask outputs, as SAM 2.1's
    `dynamic_multimask_via_stability` does in eval mode."""
    with torch.no_grad():
        sam21 = build_sec_model(ModelConfig(mode="stage1"))
        # on this random toy the token-0 mask is unstable: SAM 2.1's eval mode falls back
        assert not torch.equal(_decoder_masks(sam21, False), _decoder_masks(sam21, True))
        one_mask = build_sec_model(ModelConfig(mode="stage1", multimask_tracking=False))
        inference, training = _decoder_masks(one_mask, False), _decoder_masks(one_mask, True)
        torch.testing.assert_close(inference, training, rtol=0, atol=0)


def test_a_one_mask_checkpoint_without_the_rule_loads_with_token_0_kept():
    """A one-mask SAM 2 saved before the rule (fallback still on in its config) loads without it."""
    sam2 = build_sam2("toy")
    sam2.config.multimask_output_for_tracking = False  # as such a checkpoint's config reads
    assert sam2.mask_decoder.dynamic_multimask_via_stability
    set_multimask_tracking(sam2, None)
    assert not sam2.mask_decoder.dynamic_multimask_via_stability
    set_multimask_tracking(sam2, True)
    assert sam2.mask_decoder.dynamic_multimask_via_stability


def _another_lvlm(directory) -> dict[str, torch.Tensor]:
    """A toy LVLM directory with weights unlike the toy base's (a pretrained InternVL's stand-in)."""
    lvlm, tokenizer = build_toy_lvlm("toy")
    with torch.no_grad():
        for p in lvlm.parameters():
            p.add_(0.25)
    lvlm.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {k: v.clone() for k, v in lvlm.state_dict().items()}


def test_init_lvlm_puts_another_lvlm_under_a_stage1_checkpoint_and_reloads_on_it(tmp_path):
    stage1 = _stage1_checkpoint(tmp_path / "stage1")
    pretrained = _another_lvlm(tmp_path / "lvlm")
    key = "model.vision_tower.embeddings.patch_embeddings.projection.weight"  # stage 2 keeps it frozen
    base = build_sec_model(ModelConfig()).lvlm.state_dict()[key]
    assert not torch.equal(base, pretrained[key])

    model = build_trainable_model(
        ModelConfig(mode="concept_only", init=str(tmp_path / "stage1"), init_lvlm=str(tmp_path / "lvlm"))
    )
    torch.testing.assert_close(merged_lvlm_state_dict(model.lvlm)[key], pretrained[key], rtol=0, atol=0)
    for name, value in model.sam2.memory_attention.state_dict().items():  # stage 1's SAM 2 still
        torch.testing.assert_close(value, stage1[name], rtol=0, atol=0)

    # its checkpoint records the LVLM it ran on: a reload rebuilds on it, not on stage 1's base
    save_trainable(model, tmp_path / "stage2")
    reloaded = build_sec_model(ModelConfig(init=str(tmp_path / "stage2")))
    torch.testing.assert_close(merged_lvlm_state_dict(reloaded.lvlm)[key], pretrained[key], rtol=0, atol=0)
    # stage 2 trained the LVLM (LoRA): its LVLM cannot be swapped away
    with pytest.raises(ValueError, match="stage2 trained the LVLM"):
        build_sec_model(ModelConfig(init=str(tmp_path / "stage2"), init_lvlm=str(tmp_path / "lvlm")))


def test_init_lvlm_reaches_the_base_under_a_chain_of_stage1_checkpoints(tmp_path):
    """A stage 1 continued from another (the demo's ordered phase) is rebuilt over the first's
    base: `init_lvlm` must replace the LVLM there, not only one level down."""
    _stage1_checkpoint(tmp_path / "stage1")
    stage1b = ModelConfig(mode="stage1", init=str(tmp_path / "stage1"), trainable=STAGE1_TRAINABLE)
    continued = build_trainable_model(stage1b)
    save_trainable(continued, tmp_path / "stage1b")
    pretrained = _another_lvlm(tmp_path / "lvlm")
    key = "model.vision_tower.embeddings.patch_embeddings.projection.weight"
    model = build_trainable_model(
        ModelConfig(mode="concept_only", init=str(tmp_path / "stage1b"), init_lvlm=str(tmp_path / "lvlm"))
    )
    torch.testing.assert_close(merged_lvlm_state_dict(model.lvlm)[key], pretrained[key], rtol=0, atol=0)
    save_trainable(model, tmp_path / "stage2")
    reloaded = build_sec_model(ModelConfig(init=str(tmp_path / "stage2")))
    torch.testing.assert_close(merged_lvlm_state_dict(reloaded.lvlm)[key], pretrained[key], rtol=0, atol=0)
