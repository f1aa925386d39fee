"""SAM 2 key mapping without Meta's package: round trip, memory-bank resize, error reports."""

import pytest
import torch
import torch.nn.functional as F
from transformers import Sam2VideoModel

from sec_train.convert.cli import main
from sec_train.convert.sam2 import detect_sam2_config, import_sam2, plan_to_original, sam2_shapes
from sec_train.convert.streaming import TensorSource
from sec_train.model.sam2 import real_sam2_config, toy_sam2_config
from tests.convert_layouts import apply_plan


@pytest.fixture(scope="module")
def ours():
    torch.manual_seed(0)
    model = Sam2VideoModel(toy_sam2_config()).eval()
    # one Gaussian matrix, as in every converted checkpoint (random init draws two)
    model.prompt_encoder.shared_embedding.positional_embedding.copy_(
        model.shared_image_embedding.positional_embedding
    )
    return model


def to_original(model: Sam2VideoModel) -> dict[str, torch.Tensor]:
    """Our model's tensors under Meta's names, through the export mapping."""
    state = model.state_dict()
    return apply_plan(plan_to_original(list(state), model.config), state)


def test_export_then_import_is_the_identity(ours, tmp_path):
    original = to_original(ours)
    assert "sam_prompt_encoder.point_embeddings.3.weight" in original
    assert "image_encoder.trunk.blocks.0.mlp.layers.1.weight" in original
    torch.save({"model": original}, tmp_path / "meta.pt")
    import_sam2(tmp_path / "meta.pt", tmp_path / "back", config=ours.config)
    back = Sam2VideoModel.from_pretrained(str(tmp_path / "back")).state_dict()
    expected = ours.state_dict()
    assert back.keys() == expected.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(back[key], tensor, rtol=0, atol=0, msg=key)


def sec_reference_resize(encoding: torch.Tensor, length: int) -> torch.Tensor:
    """SeC's own rule (its `pretrained_models/reshape.py`): bilinear, aligned corners, over a
    [1, mem_dim, 1, num_maskmem] view of the [num_maskmem, 1, 1, mem_dim] encodings."""
    grid = encoding.permute(1, 3, 2, 0)
    return F.interpolate(grid, size=(1, length), mode="bilinear", align_corners=True).permute(3, 2, 0, 1)


def test_import_interpolates_the_memory_bank_as_sec_does(ours, tmp_path):
    original = to_original(ours)
    # channels 0-31: slot k holds k * (c + 1), linear in k, so the resized values are known exactly
    ramp = torch.arange(7.0)[:, None] * torch.arange(1.0, 33.0)[None, :]
    encoding = torch.cat([ramp, torch.randn(7, 32, generator=torch.Generator().manual_seed(0))], 1)
    original["maskmem_tpos_enc"] = encoding.view(7, 1, 1, 64)
    torch.save({"model": original}, tmp_path / "meta.pt")
    ours.config.to_json_file(str(tmp_path / "config.json"))
    argv = ["import", "sam2", "--ckpt", str(tmp_path / "meta.pt"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--config", str(tmp_path / "config.json"), "--num-maskmem", "22"]) == 0
    model = Sam2VideoModel.from_pretrained(str(tmp_path / "out"))
    resized = model.memory_temporal_positional_encoding.data
    assert model.config.num_maskmem == 22 and resized.shape == (22, 1, 1, 64)
    torch.testing.assert_close(resized, sec_reference_resize(encoding.view(7, 1, 1, 64), 22))
    slots = torch.arange(22.0) * 6 / 21  # the 22 new slots span the 7 old ones end to end
    torch.testing.assert_close(resized[:, 0, 0, :32], slots[:, None] * torch.arange(1.0, 33.0)[None, :])


def test_export_warns_when_the_two_gaussian_copies_differ():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="shared_image_embedding"):
        original = to_original(Sam2VideoModel(toy_sam2_config()))
    assert original["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape == (2, 64)


def test_missing_and_unexpected_keys_are_listed(ours, tmp_path):
    original = to_original(ours)
    del original["memory_encoder.out_proj.bias"]
    original["sam_mask_decoder.extra_head.weight"] = torch.zeros(1)
    torch.save({"model": original}, tmp_path / "meta.pt")
    with pytest.raises(ValueError) as err:
        import_sam2(tmp_path / "meta.pt", tmp_path / "out", config=ours.config)
    assert "memory_encoder.projection.bias" in str(err.value)
    assert "sam_mask_decoder.extra_head.weight" in str(err.value)
    assert "meta.pt" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_is_not_hiera_l_needs_a_config(ours, tmp_path):
    torch.save({"model": to_original(ours)}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="--config"):
        import_sam2(tmp_path / "meta.pt", tmp_path / "out")


def test_hiera_l_and_its_memory_bank_are_detected():
    """A SAM 2.1-L checkpoint after SeC's stage 1 (22 slots), as meta tensors: shapes only."""
    shapes = sam2_shapes(real_sam2_config(num_maskmem=22))
    meta = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    original = apply_plan(plan_to_original(list(shapes), real_sam2_config()), meta)
    config = detect_sam2_config(TensorSource.from_tensors("stage1.pt", original))
    assert config.num_maskmem == 22
    assert config.vision_config.backbone_config.blocks_per_stage == [2, 6, 36, 4]
