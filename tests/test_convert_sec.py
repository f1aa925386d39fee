"""SeC-4B layout <-> model directory: export/import identity, LoRA merge, real-size coverage, CLI."""

import json

import pytest
import torch
from safetensors import safe_open

from sec_train.convert import internvl, sam2
from sec_train.convert.cli import main
from sec_train.convert.sec import (
    GROUNDING,
    SEC_LAYER_SCALE,
    parts_shapes,
    plan_from_release,
    plan_parts_to_original,
)
from sec_train.convert.streaming import TensorSource, plan_problems
from sec_train.model.build import build_sec_model
from sec_train.model.config import LoraConfig, ModelConfig, TrainableConfig
from sec_train.model.lvlm import real_lvlm_config
from sec_train.model.sam2 import real_sam2_config, toy_sam2_config
from sec_train.model.trainable import apply_trainable
from sec_train.model.weights import save_model_dir, save_trainable
from tests.convert_layouts import original_internvl_4b_shapes, run_on_meta


def one_gaussian(model) -> None:
    """One Gaussian matrix in SAM 2, as in every real checkpoint (random init draws two)."""
    with torch.no_grad():
        gaussian = model.sam2.shared_image_embedding.positional_embedding
        model.sam2.prompt_encoder.shared_embedding.positional_embedding.copy_(gaussian)


@pytest.fixture(scope="module")
def toy_model():
    torch.manual_seed(0)
    model = build_sec_model(ModelConfig(lvlm="toy", sam2="toy"))
    one_gaussian(model)
    with torch.no_grad():
        for param in model.token_attn.parameters():  # token_attn trained away from its source
            param.add_(torch.randn_like(param) * 0.01)
    return model


def all_tensors(directory) -> dict[str, torch.Tensor]:
    out = {}
    for part in ("lvlm", "sam2", "sec_parts.safetensors"):
        source = TensorSource.from_safetensors(directory / part)
        out |= {f"{part}/{key}": source.get(key) for key in source}
    return out


def test_export_then_import_is_the_identity(toy_model, tmp_path):
    save_model_dir(toy_model, tmp_path / "ours")
    assert (
        main(["export", "sec", "--checkpoint", str(tmp_path / "ours"), "--out", str(tmp_path / "release")])
        == 0
    )

    index = json.loads((tmp_path / "release" / "model.safetensors.index.json").read_text())["weight_map"]
    for key in (
        "vision_model.encoder.layers.0.attn.qkv.weight",
        "mlp1.3.bias",
        "language_model.lm_head.weight",
        "grounding_encoder.image_encoder.trunk.blocks.0.attn.qkv.weight",
        "grounding_encoder.sam_prompt_encoder.point_embeddings.0.weight",
        "grounding_encoder.token_attn.layers.0.cross_attn_image.out_proj.weight",
        "grounding_encoder.maskmem_tpos_enc",
        "grounding_encoder.memory_encoder.fuser.layers.0.g_weight",
        "text_hidden_fcs.2.weight",
    ):
        assert key in index, key
    config = json.loads((tmp_path / "release" / "config.json").read_text())
    assert config["grounding_maskmem_num"] == 7 and config["llm_config"]["hidden_size"] == 64
    assert config["template"] == "qwen_chat" and config["auto_map"]["AutoModel"] == "modeling_sec.SeCModel"

    toy_sam2_config().to_json_file(str(tmp_path / "sam2.json"))
    argv = ["import", "sec", "--dir", str(tmp_path / "release"), "--out", str(tmp_path / "back")]
    assert main([*argv, "--sam2-config", str(tmp_path / "sam2.json")]) == 0
    before, after = all_tensors(tmp_path / "ours"), all_tensors(tmp_path / "back")
    assert before.keys() == after.keys()
    for key, tensor in before.items():
        torch.testing.assert_close(after[key], tensor, rtol=0, atol=0, msg=key)
    rebuilt = build_sec_model(ModelConfig(init=str(tmp_path / "back")))
    for key, tensor in toy_model.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], tensor, rtol=0, atol=0, msg=key)


# the export rebuilds the random toy base, whose SAM 2 draws two different Gaussian matrices
@pytest.mark.filterwarnings("ignore:.*Meta's layout has one matrix")
def test_trainable_checkpoint_is_exported_with_lora_merged(tmp_path):
    torch.manual_seed(1)
    cfg = ModelConfig(lvlm="toy", sam2="toy", trainable=TrainableConfig(lora=LoraConfig(r=4, alpha=8)))
    model = build_sec_model(cfg)
    one_gaussian(model)
    apply_trainable(model, cfg.trainable)
    name = "language_model.layers.0.self_attn.q_proj"
    layer = next(m for n, m in model.lvlm.named_modules() if n.endswith(name) and hasattr(m, "lora_B"))
    projector = model.lvlm.model.multi_modal_projector.linear_1.weight
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        projector.add_(1.0)  # trained: the export must carry it as the release's mlp1
    merged = layer.get_base_layer().weight + layer.get_delta_weight("default")
    save_trainable(model, tmp_path / "ckpt")
    assert (
        main(["export", "sec", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "release")])
        == 0
    )
    source = TensorSource.from_safetensors(tmp_path / "release")
    exported = source.get("language_model.model.layers.0.self_attn.q_proj.weight")
    torch.testing.assert_close(exported, merged.detach())
    torch.testing.assert_close(source.get("mlp1.1.weight"), projector.detach())
    assert not any("lora" in key for key in source)


def test_real_release_layout_maps_to_the_real_model():
    """InternVL2_5-4B's keys + SAM 2.1-L under grounding_encoder + token_attn + text_hidden_fcs."""
    lvlm_config, sam2_config = real_lvlm_config(), real_sam2_config(num_maskmem=22)
    sam_ours = sam2.sam2_shapes(sam2_config)
    model = build_sec_model(ModelConfig(lvlm="real", sam2="real", num_maskmem=22))
    parts_ours = {
        k: v.shape for k, v in model.state_dict().items() if k.startswith(("text_hidden_fcs", "token_attn"))
    }
    assert parts_shapes(lvlm_config, sam2_config) == parts_ours
    release = dict(original_internvl_4b_shapes())
    release |= run_on_meta(
        sam2.plan_to_original(list(sam_ours), sam2_config, GROUNDING, SEC_LAYER_SCALE), sam_ours
    )
    release |= run_on_meta(plan_parts_to_original(list(parts_ours)), parts_ours)
    assert release["grounding_encoder.maskmem_tpos_enc"] == (22, 1, 1, 64)
    assert release["grounding_encoder.memory_encoder.fuser.layers.1.g_weight"] == (256,)
    assert release["grounding_encoder.token_attn.layers.3.self_attn.out_proj.weight"] == (256, 256)

    lvlm_steps, sam_steps, part_steps = plan_from_release(list(release), sam2_config)
    assert plan_problems(lvlm_steps + sam_steps + part_steps, release) == ""
    assert run_on_meta(lvlm_steps, release) == internvl.lvlm_shapes(lvlm_config)
    assert run_on_meta(sam_steps, release) == sam_ours
    assert run_on_meta(part_steps, release) == parts_ours


def test_import_refuses_a_non_empty_output(toy_model, tmp_path):
    save_model_dir(toy_model, tmp_path / "ours")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    argv = ["export", "sec", "--checkpoint", str(tmp_path / "ours"), "--out", str(tmp_path / "taken")]
    assert main(argv) == 1
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_export_casts_to_the_release_dtype(toy_model, tmp_path):
    save_model_dir(toy_model, tmp_path / "ours")
    argv = ["export", "sec", "--checkpoint", str(tmp_path / "ours"), "--out", str(tmp_path / "release")]
    assert main([*argv, "--dtype", "bfloat16"]) == 0
    shards = sorted((tmp_path / "release").glob("model-*-of-*.safetensors"))
    assert [s.name for s in shards] == ["model-00001-of-00001.safetensors"]
    with safe_open(str(shards[0]), framework="pt") as f:
        names = f.keys()
        assert {f.get_slice(k).get_dtype() for k in names} == {"BF16"}
    assert json.loads((tmp_path / "release" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_reference_release_keeps_its_entries_and_code(toy_model, tmp_path):
    reference = tmp_path / "SeC-4B"
    reference.mkdir()
    (reference / "modeling_sec.py").write_text("# the release's remote code\n")
    release_config = {"template": "from_release", "vision_config": {"hidden_size": 1024}, "custom": 1}
    (reference / "config.json").write_text(json.dumps(release_config))
    save_model_dir(toy_model, tmp_path / "ours")
    argv = ["export", "sec", "--checkpoint", str(tmp_path / "ours"), "--out", str(tmp_path / "release")]
    assert main([*argv, "--reference", str(reference)]) == 0
    config = json.loads((tmp_path / "release" / "config.json").read_text())
    assert config["template"] == "from_release" and config["custom"] == 1
    assert config["vision_config"]["hidden_size"] == 32  # shapes are the exported model's
    assert (tmp_path / "release" / "modeling_sec.py").read_text() == "# the release's remote code\n"
