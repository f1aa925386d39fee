"""SAM 2 configs, building, memory-bank resizing and image normalisation."""

import numpy as np
import pytest
import torch

from sec_train.model.sam2 import build_sam2, normalize_images, set_num_maskmem


def test_toy_sam2_has_the_sizes_transformers_video_inference_needs():
    sam2 = build_sam2("toy", 7)
    assert sam2.image_size == 128
    assert sam2.hidden_dim == 128 and sam2.hidden_dim % 64 == 0
    assert sam2.mem_dim == 64
    assert sam2.backbone_feature_sizes == [[32, 32], [16, 16], [8, 8]]
    assert sum(p.numel() for p in sam2.parameters()) < 5_000_000


def test_real_sam2_is_sam21_hiera_large_on_the_meta_device():
    sam2 = build_sam2("real", 22)
    assert next(sam2.parameters()).device.type == "meta"
    # SAM 2.1 Hiera-L has 224.4 M parameters, 212.7 M of them in the image encoder.
    assert round(sum(p.numel() for p in sam2.parameters()) / 1e6, 1) == 224.4
    assert round(sum(p.numel() for p in sam2.vision_encoder.parameters()) / 1e6, 1) == 212.7
    assert sam2.image_size == 1024 and sam2.backbone_feature_sizes[-1] == [64, 64]
    assert sam2.memory_temporal_positional_encoding.shape == (22, 1, 1, 64)


def test_set_num_maskmem_interpolates_linearly_with_aligned_corners():
    sam2 = build_sam2("toy", 7)
    old = torch.randn(7, 1, 1, 64)
    with torch.no_grad():
        sam2.memory_temporal_positional_encoding.copy_(old)
    set_num_maskmem(sam2, 22)
    new = sam2.memory_temporal_positional_encoding
    assert new.shape == (22, 1, 1, 64) and new.requires_grad
    assert sam2.num_maskmem == 22 and sam2.config.num_maskmem == 22
    positions = np.linspace(0, 6, 22)  # align-corners: slot 0 -> 0, slot 21 -> 6
    for c in (0, 17, 63):
        expected = np.interp(positions, np.arange(7), old[:, 0, 0, c].numpy())
        np.testing.assert_allclose(new[:, 0, 0, c].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert dict(sam2.named_parameters())["memory_temporal_positional_encoding"] is new


def test_build_from_a_checkpoint_dir_resizes_the_memory_bank(tmp_path):
    torch.manual_seed(0)
    saved = build_sam2("toy", 7)
    saved.save_pretrained(tmp_path)
    same = build_sam2(str(tmp_path))
    torch.testing.assert_close(same.mask_decoder.iou_token.weight, saved.mask_decoder.iou_token.weight)
    assert same.num_maskmem == 7
    resized = build_sam2(str(tmp_path), 22)
    assert resized.memory_temporal_positional_encoding.shape[0] == 22
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        build_sam2(str(tmp_path / "no_such_dir"), 7)


def test_normalize_images_uses_imagenet_statistics():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[:, 1] = 255
    out = normalize_images(images, torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == images.shape
    expected = [-0.485 / 0.229, (1 - 0.456) / 0.224, -0.406 / 0.225]
    for channel, value in enumerate(expected):
        assert torch.allclose(out[:, channel].float(), torch.tensor(value), atol=2e-2)
    with pytest.raises(TypeError, match="uint8"):
        normalize_images(images.float(), torch.float32)
