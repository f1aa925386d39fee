"""The LVLM builders: toy sizes, real InternVL 2.5-4B shapes, loading a local directory."""

from __future__ import annotations

import pytest
import torch
from transformers import InternVLForConditionalGeneration

from sec_train.model.lvlm import (
    build_real_lvlm_meta,
    build_toy_lvlm,
    image_tokens_per_frame,
    load_lvlm,
    lvlm_image_size,
    toy_lvlm_config,
)
from sec_train.model.sam2 import normalize_images
from sec_train.tokens import IMG_CONTEXT, SEG_TOKEN


def test_toy_lvlm_sizes_and_image_features():
    model, tokenizer = build_toy_lvlm()
    assert lvlm_image_size(model) == 56
    assert image_tokens_per_frame(model) == 4
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    vocab = model.get_input_embeddings().num_embeddings
    assert vocab % 64 == 0 and vocab >= len(tokenizer)
    images = torch.randint(0, 256, (3, 3, 56, 56), dtype=torch.uint8)
    features = model.get_image_features(normalize_images(images, torch.float32)).pooler_output
    assert features.shape == (3, 4, model.config.text_config.hidden_size)


def test_real_lvlm_meta_has_internvl25_4b_shapes():
    model = build_real_lvlm_meta()
    assert image_tokens_per_frame(model) == 256
    assert lvlm_image_size(model) == 448
    assert model.config.text_config.hidden_size == 2048
    assert model.get_input_embeddings().weight.device.type == "meta"
    n_params = sum(p.numel() for p in model.parameters())
    assert 3.6e9 < n_params < 3.8e9  # InternVL2.5-4B has 3.7 B parameters


def test_load_lvlm_grows_embeddings_for_seg(tmp_path):
    _, tokenizer = build_toy_lvlm()
    seg_id = tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    # a checkpoint whose vocabulary is short of the tokenizer's, as InternVL's is before [SEG]
    short = toy_lvlm_config(len(tokenizer) - 3, tokenizer.convert_tokens_to_ids(IMG_CONTEXT))
    InternVLForConditionalGeneration(short).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, loaded = load_lvlm(tmp_path)
    assert loaded.convert_tokens_to_ids(SEG_TOKEN) == seg_id
    assert model.get_input_embeddings().num_embeddings == 512
    assert model.get_output_embeddings().weight.shape[0] == 512


def test_load_lvlm_rejects_mismatched_image_token(tmp_path):
    _, tokenizer = build_toy_lvlm()
    InternVLForConditionalGeneration(toy_lvlm_config(512, image_token_id=7)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="image_token_id"):
        load_lvlm(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_lvlm(tmp_path / "missing")
