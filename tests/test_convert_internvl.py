"""InternVL 2.5 original layout <-> transformers: real-size key coverage and a tiny round trip."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import InternVLForConditionalGeneration

from sec_train.convert.cli import main
from sec_train.convert.internvl import (
    config_to_original,
    import_internvl,
    lvlm_shapes,
    plan_from_original,
    plan_to_original,
)
from sec_train.convert.streaming import ShardWriter, TensorSource, plan_problems, run_plan
from sec_train.model.lvlm import build_toy_lvlm, real_lvlm_config
from tests.convert_layouts import original_internvl_4b_shapes, run_on_meta


def test_real_4b_layout_maps_to_the_real_config_and_back():
    original = original_internvl_4b_shapes()
    ours = lvlm_shapes(real_lvlm_config())
    steps = plan_from_original(list(original))
    assert plan_problems(steps, original, ours) == ""
    assert run_on_meta(steps, original) == ours
    back = plan_to_original(list(ours))
    assert plan_problems(back, ours, original) == ""
    assert run_on_meta(back, ours) == {key: torch.Size(shape) for key, shape in original.items()}


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return build_toy_lvlm()


def write_original(model, tokenizer, directory):
    """The toy model in the original layout, as our export mapping writes it."""
    model.save_pretrained(str(directory.with_name("saved")))
    saved = TensorSource.from_safetensors(directory.with_name("saved"))
    with ShardWriter(directory) as writer:
        run_plan(plan_to_original(saved.keys()), saved, writer)
    config = {"architectures": ["InternVLChatModel"], **config_to_original(model.config)}
    (directory / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(str(directory))
    return TensorSource.from_safetensors(directory)


def test_toy_round_trip_through_the_original_layout(toy, tmp_path):
    model, tokenizer = toy
    original = write_original(model, tokenizer, tmp_path / "original")
    assert original.get("vision_model.encoder.layers.0.attn.qkv.weight").shape == (96, 32)
    assert (
        main(["import", "internvl", "--dir", str(tmp_path / "original"), "--out", str(tmp_path / "ours")])
        == 0
    )
    back = InternVLForConditionalGeneration.from_pretrained(str(tmp_path / "ours")).eval()
    expected = model.state_dict()
    assert back.state_dict().keys() == expected.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(back.state_dict()[key], tensor, rtol=0, atol=0, msg=key)
    ids = torch.randint(0, 400, (1, 12))
    with torch.no_grad():  # the converted config rebuilds the same network
        torch.testing.assert_close(back(input_ids=ids).logits, model(input_ids=ids).logits)


def test_unmapped_and_missing_original_keys_are_listed(toy, tmp_path):
    model, tokenizer = toy
    write_original(model, tokenizer, tmp_path / "original")
    path = tmp_path / "original" / "model-00001-of-00001.safetensors"
    tensors = load_file(str(path))
    del tensors["mlp1.3.bias"]
    tensors["vision_model.encoder.layers.0.attn.q_norm.weight"] = torch.ones(32)
    save_file(tensors, str(path))
    with pytest.raises(ValueError) as err:
        import_internvl(tmp_path / "original", tmp_path / "ours")
    assert "multi_modal_projector.linear_2.bias" in str(err.value)
    assert "vision_model.encoder.layers.0.attn.q_norm.weight" in str(err.value)


def test_a_tied_llm_gets_the_untied_lm_head_of_the_original_layout():
    shapes = lvlm_shapes(real_lvlm_config())
    tied = [key for key in shapes if key != "language_model.lm_head.weight"]
    steps = {step.target: step.sources for step in plan_to_original(tied)}
    assert steps["language_model.lm_head.weight"] == ("language_model.model.embed_tokens.weight",)
    assert plan_problems(plan_to_original(tied), tied, original_internvl_4b_shapes()) == ""


def test_a_config_without_vision_fields_is_named(toy, tmp_path):
    model, tokenizer = toy
    write_original(model, tokenizer, tmp_path / "original")
    config = json.loads((tmp_path / "original" / "config.json").read_text())
    del config["vision_config"]["hidden_size"]
    (tmp_path / "original" / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match="config.json: not an InternVL chat-model config, it lacks 'hidden_size'"
    ):
        import_internvl(tmp_path / "original", tmp_path / "ours")
