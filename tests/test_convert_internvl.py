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
from sec_train.convert.streaming import TensorSource, plan_problems
from sec_train.model.lvlm import build_toy_lvlm, real_lvlm_config


def original_internvl_4b_shapes() -> dict[str, tuple[int, ...]]:
    """InternVL2_5-4B's own state dict, written out from its modeling code: InternViT-300M
    (24 layers, fused qkv, layer scales ls1/ls2), the mlp1 projector, Qwen2.5-3B."""
    vit, ff, llm, kv, mlp, vocab = 1024, 4096, 2048, 256, 11008, 151674
    shapes = {
        "vision_model.embeddings.class_embedding": (1, 1, vit),
        "vision_model.embeddings.patch_embedding.weight": (vit, 3, 14, 14),
        "vision_model.embeddings.patch_embedding.bias": (vit,),
        "vision_model.embeddings.position_embedding": (1, 1 + 32 * 32, vit),
        "mlp1.0.weight": (4 * vit,),
        "mlp1.0.bias": (4 * vit,),
        "mlp1.1.weight": (llm, 4 * vit),
        "mlp1.1.bias": (llm,),
        "mlp1.3.weight": (llm, llm),
        "mlp1.3.bias": (llm,),
        "language_model.model.embed_tokens.weight": (vocab, llm),
        "language_model.model.norm.weight": (llm,),
        "language_model.lm_head.weight": (vocab, llm),
    }
    for i in range(24):
        layer = f"vision_model.encoder.layers.{i}."
        shapes |= {
            layer + "attn.qkv.weight": (3 * vit, vit),
            layer + "attn.qkv.bias": (3 * vit,),
            layer + "attn.proj.weight": (vit, vit),
            layer + "attn.proj.bias": (vit,),
            layer + "ls1": (vit,),
            layer + "ls2": (vit,),
            layer + "mlp.fc1.weight": (ff, vit),
            layer + "mlp.fc1.bias": (ff,),
            layer + "mlp.fc2.weight": (vit, ff),
            layer + "mlp.fc2.bias": (vit,),
        }
        shapes |= {layer + f"norm{n}.{p}": (vit,) for n in (1, 2) for p in ("weight", "bias")}
    for i in range(36):
        layer = f"language_model.model.layers.{i}."
        shapes |= {
            layer + "self_attn.q_proj.weight": (llm, llm),
            layer + "self_attn.q_proj.bias": (llm,),
            layer + "self_attn.k_proj.weight": (kv, llm),
            layer + "self_attn.k_proj.bias": (kv,),
            layer + "self_attn.v_proj.weight": (kv, llm),
            layer + "self_attn.v_proj.bias": (kv,),
            layer + "self_attn.o_proj.weight": (llm, llm),
            layer + "mlp.gate_proj.weight": (mlp, llm),
            layer + "mlp.up_proj.weight": (mlp, llm),
            layer + "mlp.down_proj.weight": (llm, mlp),
            layer + "input_layernorm.weight": (llm,),
            layer + "post_attention_layernorm.weight": (llm,),
        }
    return shapes


def run_on_meta(steps, shapes) -> dict[str, torch.Size]:
    """Output shapes of a plan, running its combine functions on meta tensors."""
    tensors = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    out = {}
    for step in steps:
        inputs = [tensors[key] for key in step.sources]
        out[step.target] = (step.combine(inputs) if step.combine is not None else inputs[0]).shape
    return out


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
    directory.mkdir()
    tensors = {}
    for step in plan_to_original(saved.keys()):
        inputs = [saved.get(key) for key in step.sources]
        tensors[step.target] = (step.combine(inputs) if step.combine is not None else inputs[0]).contiguous()
    save_file(tensors, str(directory / "model.safetensors"))
    config = {"architectures": ["InternVLChatModel"], **config_to_original(model.config)}
    (directory / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(str(directory))
    return tensors


def test_toy_round_trip_through_the_original_layout(toy, tmp_path):
    model, tokenizer = toy
    original = write_original(model, tokenizer, tmp_path / "original")
    assert original["vision_model.encoder.layers.0.attn.qkv.weight"].shape == (96, 32)
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
    path = tmp_path / "original" / "model.safetensors"
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
