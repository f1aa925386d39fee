"""SeCModel on toy sizes: structure, stage-2 forward against independent paths, learning, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sec_train.bench.stage2 import one_state_per_sample
from sec_train.model.build import build_sec_model
from sec_train.model.config import LoraConfig, ModelConfig, TrainableConfig
from sec_train.model.sam2 import normalize_images
from sec_train.model.tracker import Sam2Tracker
from sec_train.model.trainable import apply_trainable
from sec_train.types import Stage1Batch
from tests.sec_toy_batches import single_thread, stage1_batch, stage2_batch  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

LORA = LoraConfig(r=8, alpha=16, dropout=0.0)


def test_toy_model_structure():
    model = build_sec_model(ModelConfig())
    assert (model.lvlm_image_size, model.sam_image_size, model.num_image_tokens) == (56, 128, 4)
    assert model.tokenizer.convert_ids_to_tokens(model.seg_token_id) == "[SEG]"
    fcs = model.text_hidden_fcs
    assert [type(m).__name__ for m in fcs] == ["Linear", "ReLU", "Linear", "Dropout"]
    assert (fcs[0].in_features, fcs[0].out_features, fcs[2].out_features, fcs[3].p) == (64, 64, 256, 0.0)
    # token_attn starts as a copy of the memory attention, with weights of its own
    for (name, a), b in zip(
        model.token_attn.state_dict().items(), model.sam2.memory_attention.state_dict().values()
    ):
        assert torch.equal(a, b), name
        assert a.data_ptr() != b.data_ptr() or a.numel() == 0, name
    # the tracker is a plain object: every weight appears once in the state dict
    assert isinstance(model.tracker, Sam2Tracker) and not isinstance(model.tracker, torch.nn.Module)
    assert model.tracker.sam2 is model.sam2 and model.tracker.token_attn is model.token_attn
    names = list(model.state_dict())
    assert not any(n.startswith("tracker") for n in names) and len(names) == len(set(names))


def test_real_sizes_build_on_meta():
    model = build_sec_model(ModelConfig(lvlm="real", sam2="real"))
    assert (model.lvlm_image_size, model.sam_image_size, model.num_image_tokens) == (448, 1024, 256)
    assert model.text_hidden_fcs[0].in_features == 2048
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_concept_and_lm_loss_match_independent_computation():
    model = build_sec_model(ModelConfig())
    batch = stage2_batch(model)
    with torch.no_grad():
        concept = model.concept_embedding(
            batch.lvlm_images, batch.input_ids, batch.attention_mask, batch.lvlm_frames_per_sample
        )
        pixels = (
            batch.lvlm_images.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        ) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        # transformers' own LM loss over the full logits, and the hidden state it returns
        full = model.lvlm(
            input_ids=batch.input_ids,
            pixel_values=pixels,
            attention_mask=batch.attention_mask,
            labels=batch.labels,
            output_hidden_states=True,
        )
        hidden = model.lvlm.model(
            input_ids=batch.input_ids, pixel_values=pixels, attention_mask=batch.attention_mask
        ).last_hidden_state
        seg = [row.tolist().index(model.seg_token_id) for row in batch.input_ids]
        expected = torch.stack([model.text_hidden_fcs(hidden[b, i]) for b, i in enumerate(seg)])
        losses = model(batch)
    torch.testing.assert_close(concept, expected)
    torch.testing.assert_close(losses["loss_lm"], full.loss)
    torch.testing.assert_close(model.lvlm.lm_head(hidden), full.logits)


def test_total_loss_is_the_weighted_sum_of_its_parts():
    model = build_sec_model(ModelConfig())
    with torch.no_grad():
        losses = model(stage2_batch(model))
    assert set(losses) == {"loss", "loss_focal", "loss_dice", "loss_iou", "loss_object", "loss_lm"}
    w = model.config.loss
    expected = (
        w.focal * losses["loss_focal"]
        + w.dice * losses["loss_dice"]
        + w.iou * losses["loss_iou"]
        + w.object_score * losses["loss_object"]
        + w.lm * losses["loss_lm"]
    )
    torch.testing.assert_close(losses["loss"], expected)


@pytest.mark.parametrize("mode", ["concept_only", "fused"])
def test_context_frames_matter_only_in_fused_mode(mode):
    model = build_sec_model(ModelConfig(mode=mode))
    batch = stage2_batch(model, refs=(1,), sam_frames=(3,))
    altered = dataclasses.replace(
        batch, sam_images=batch.sam_images.clone(), sam_masks=batch.sam_masks.clone()
    )
    altered.sam_images[:2] = 255 - altered.sam_images[:2]  # the two context frames, not the target
    altered.sam_masks[:2] = ~altered.sam_masks[:2]
    with torch.no_grad():
        a = model(batch)["loss"]
        b = model(altered)["loss"]
    assert torch.equal(a, b) == (mode == "concept_only")


def test_concept_reaches_the_masks_in_both_modes():
    for mode in ("concept_only", "fused"):
        model = build_sec_model(ModelConfig(mode=mode))
        batch = stage2_batch(model, refs=(1,), sam_frames=(2,))
        with torch.no_grad():
            concept = torch.randn(1, 256)
            a = model._target_outputs(batch, concept).multimask_logits
            b = model._target_outputs(batch, concept * -3).multimask_logits
        assert not torch.allclose(a, b), mode


@pytest.mark.parametrize("mode", ["concept_only", "fused"])
def test_samples_tracked_together_match_each_tracked_alone(mode):
    model = build_sec_model(ModelConfig(mode=mode)).eval()
    # clip lengths mixed and out of order: fused mode groups samples by length (and needs two
    # frames, a prompted one before the target; concept-only reads the target alone)
    sam_frames = (3, 2, 4, 3, 2) if mode == "fused" else (3, 1, 4, 3, 2)
    batch = stage2_batch(model, refs=(1, 2, 1, 1, 2), sam_frames=sam_frames)
    concept = torch.randn(5, 256, generator=torch.Generator().manual_seed(0))
    images = normalize_images(batch.sam_images, torch.float32)
    with torch.no_grad():
        together = model._target_outputs(batch, concept)
        alone = one_state_per_sample(model.tracker, images, batch, concept, mode)
    for name in ("multimask_logits", "ious", "object_score_logits", "object_pointer"):
        a, b = getattr(together, name), getattr(alone, name)
        assert a.shape[0] == 5
        for i in range(5):
            torch.testing.assert_close(a[i], b[i], atol=1e-4, rtol=1e-4, msg=f"{name} of sample {i}")


@pytest.mark.parametrize("dropout", [None, 0.0])
def test_token_attn_dropout_is_the_recipe_key_and_leaves_memory_attention_alone(dropout):
    model = build_sec_model(ModelConfig(mode="concept_only", token_attn_dropout=dropout)).train()
    batch = stage2_batch(model, refs=(1,), sam_frames=(2,))
    concept = torch.randn(1, 256)
    with torch.no_grad():
        a, b = (model._target_outputs(batch, concept).multimask_logits for _ in range(2))
    # None keeps SAM 2's memory-attention dropout in the copy, so two training passes differ
    assert torch.equal(a, b) == (dropout == 0.0)
    probabilities = {m.p for m in model.sam2.memory_attention.modules() if isinstance(m, torch.nn.Dropout)}
    assert probabilities == {0.1}
    assert {m.dropout_p for m in model.sam2.memory_attention.modules() if hasattr(m, "dropout_p")} == {0.1}


def _overfit(model, batch, policy: TrainableConfig, steps: int, lr: float = 3e-3) -> tuple[dict, dict]:
    apply_trainable(model, policy)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    first = last = None
    for _ in range(steps):
        losses = model(batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        last = {k: v.item() for k, v in losses.items()}
        first = first or last
    return first, last


def _mask_loss(parts: dict, model) -> float:
    w = model.config.loss
    return w.focal * parts["loss_focal"] + w.dice * parts["loss_dice"] + w.iou * parts["loss_iou"]


@pytest.mark.parametrize("mode", ["concept_only", "fused"])
def test_stage2_overfits_one_batch(mode):
    torch.manual_seed(0)
    policy = TrainableConfig(lora=LORA, token_attn=True, mask_decoder=True, memory_attention=mode == "fused")
    model = build_sec_model(ModelConfig(mode=mode))
    first, last = _overfit(model, stage2_batch(model), policy, steps=15)
    assert last["loss"] < 0.5 * first["loss"]
    assert last["loss_lm"] < 0.5 * first["loss_lm"]
    assert _mask_loss(last, model) < 0.5 * _mask_loss(first, model)


def test_stage1_overfits_one_batch():
    torch.manual_seed(0)
    policy = TrainableConfig(lora=LoraConfig(r=0), embeddings=False, text_hidden_fcs=False)
    policy = dataclasses.replace(policy, memory_attention=True, mask_decoder=True)
    model = build_sec_model(ModelConfig(mode="stage1", stage1_tracked_frames=2))
    first, last = _overfit(model, stage1_batch(model, frames=3), policy, steps=15)
    assert "loss_lm" not in last
    assert last["loss"] < 0.5 * first["loss"]


@pytest.fixture(scope="module")
def concept_model():
    return build_sec_model(ModelConfig())


def test_bad_stage2_inputs_name_the_problem(concept_model):
    model = concept_model
    batch = stage2_batch(model)

    def fails(match: str, **changes):
        with pytest.raises(ValueError, match=match):
            model(dataclasses.replace(batch, **changes))

    fails("lvlm_frames_per_sample sums to 4", lvlm_frames_per_sample=torch.tensor([3, 1]))
    fails(r"lvlm_images must be \[N, 3, 56, 56\]", lvlm_images=F.pad(batch.lvlm_images, (0, 8, 0, 8)))
    fails(r"sam_images must be \[N, 3, 128, 128\]", sam_images=batch.sam_images[..., :64, :64])
    fails("sam_frames_per_sample sums to 6", sam_frames_per_sample=torch.tensor([3, 3]))
    fails("sam_images has 5 frames and sam_masks 4", sam_masks=batch.sam_masks[:4])
    fails("labels", labels=batch.labels[:, :-8])

    no_seg = batch.input_ids.clone()
    no_seg[1][no_seg[1] == model.seg_token_id] = model.tokenizer.pad_token_id
    fails(r"samples \['video1/obj1'\] have no \[SEG\]", input_ids=no_seg)

    lost_image_token = batch.input_ids.clone()
    lost_image_token[0][(lost_image_token[0] == model.image_token_id).nonzero()[0]] = (
        model.tokenizer.pad_token_id
    )
    fails(
        "sample video0/obj1: 11 image tokens in input_ids, but 3 frames x 4 tokens = 12",
        input_ids=lost_image_token,
    )


def test_bad_batch_for_the_mode(concept_model):
    with pytest.raises(ValueError, match="Stage1Batch but the model's mode is 'concept_only'"):
        concept_model(stage1_batch(concept_model))
    with pytest.raises(TypeError, match="Stage1Batch or Stage2Batch"):
        concept_model({"input_ids": torch.zeros(1, 8)})
    fused = build_sec_model(ModelConfig(mode="fused"))
    with pytest.raises(ValueError, match=r"fused mode needs a GT-prompted frame .* \['video1/obj1'\]"):
        fused(stage2_batch(fused, sam_frames=(2, 1)))
    stage1 = build_sec_model(ModelConfig(mode="stage1"))
    with pytest.raises(ValueError, match="Stage2Batch but the model's mode is 'stage1'"):
        stage1(stage2_batch(concept_model))
    assert isinstance(stage1_batch(stage1), Stage1Batch)


def test_activation_checkpointing_gives_the_same_losses_and_gradients():
    results = []
    for checkpointing in (False, True):
        model = build_sec_model(ModelConfig(activation_checkpointing=checkpointing))
        torch.manual_seed(0)  # LoRA A's init, and the memory attention's dropout (0.1) in train mode
        apply_trainable(model, TrainableConfig(lora=LORA))
        model.train()
        losses = model(stage2_batch(model))
        losses["loss"].backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((losses, grads))
    (plain, plain_grads), (ckpt, ckpt_grads) = results
    assert model.lvlm.model.language_model.layers[0].gradient_checkpointing
    for key in plain:
        torch.testing.assert_close(plain[key], ckpt[key])
    assert plain_grads.keys() == ckpt_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(plain_grads[name], ckpt_grads[name], msg=name)
