"""`import sam2` against Meta's own implementation: a tiny random SAM 2 built with Meta's modeling
classes, saved in its original layout, imported, and run by both sides on the same inputs."""

import pytest
import torch

sam2_pkg = pytest.importorskip("sam2")

from sam2 import sam2_video_predictor  # noqa: E402
from sam2.modeling.backbones.hieradet import Hiera  # noqa: E402
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder  # noqa: E402
from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer  # noqa: E402
from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder  # noqa: E402
from sam2.modeling.position_encoding import PositionEmbeddingSine  # noqa: E402
from sam2.modeling.sam.transformer import RoPEAttention  # noqa: E402
from transformers import Sam2VideoModel  # noqa: E402
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession  # noqa: E402

from sec_train.convert.sam2 import import_sam2, plan_from_original, sam2_shapes  # noqa: E402
from sec_train.convert.streaming import plan_problems  # noqa: E402
from sec_train.model.sam2 import real_sam2_config, toy_sam2_config  # noqa: E402
from tests.convert_layouts import apply_plan  # noqa: E402

pytestmark = pytest.mark.parity
TOL = 1e-4
FRAMES = 6


def parity_config():
    """The toy SAM 2 with the few sizes Meta's code hard-codes (mask decoder MLP 2048 with 8
    heads, IoU head 256, fuser 4x, heads doubling per Hiera stage)."""
    config = toy_sam2_config()
    config.mask_decoder_config.mlp_dim = 2048
    config.mask_decoder_config.num_attention_heads = 8
    config.mask_decoder_config.iou_head_hidden_dim = 256
    config.memory_fuser_intermediate_dim = 4 * config.memory_fuser_embed_dim
    config.vision_config.backbone_config.num_attention_heads_per_stage = [1, 2, 4, 8]
    return config


def meta_sam2(config) -> sam2_video_predictor.SAM2VideoPredictor:
    """Meta's SAM2VideoPredictor with `config`'s sizes and sam2.1_hiera_*.yaml's settings."""
    backbone, width = config.vision_config.backbone_config, config.vision_config.fpn_hidden_size
    trunk = Hiera(
        embed_dim=backbone.hidden_size,
        num_heads=backbone.num_attention_heads_per_stage[0],
        stages=backbone.blocks_per_stage,
        global_att_blocks=backbone.global_attention_blocks,
        window_spec=backbone.window_size_per_stage,
        window_pos_embed_bkg_spatial_size=backbone.window_positional_embedding_background_size,
    )
    neck = FpnNeck(
        PositionEmbeddingSine(width, image_size=config.image_size),
        d_model=width,
        backbone_channel_list=config.vision_config.backbone_channel_list,
        fpn_top_down_levels=config.vision_config.fpn_top_down_levels,
        fpn_interp_model="nearest",
    )

    def rope(kv_in_dim=None):
        extra = {"kv_in_dim": kv_in_dim, "rope_k_repeat": True} if kv_in_dim else {}
        return RoPEAttention(
            feat_sizes=config.memory_attention_rope_feat_sizes,
            embedding_dim=width,
            num_heads=config.memory_attention_num_attention_heads,
            downsample_rate=1,
            dropout=0.1,
            **extra,
        )

    layer = MemoryAttentionLayer(
        activation="relu",
        cross_attention=rope(config.memory_encoder_output_channels),
        d_model=width,
        dim_feedforward=config.memory_attention_feed_forward_hidden_size,
        dropout=0.1,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attention=rope(),
    )
    memory_encoder = MemoryEncoder(
        out_dim=config.memory_encoder_output_channels,
        mask_downsampler=MaskDownSampler(embed_dim=width, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=width, kernel_size=7, padding=3, layer_scale_init_value=1e-6), num_layers=2),
        position_encoding=PositionEmbeddingSine(
            config.memory_encoder_output_channels, image_size=config.image_size
        ),
        in_dim=width,
    )
    return sam2_video_predictor.SAM2VideoPredictor(
        image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        memory_attention=MemoryAttention(
            d_model=width, pos_enc_at_input=True, layer=layer, num_layers=config.memory_attention_num_layers
        ),
        memory_encoder=memory_encoder,
        num_maskmem=config.num_maskmem,
        image_size=config.image_size,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        no_obj_embed_spatial=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True,
        proj_tpos_enc_in_obj_ptrs=True,
        use_signed_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        binarize_mask_from_pts_for_mem_enc=True,
        # what build_sam2_video_predictor sets with apply_postprocessing (the default)
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
    ).eval()


def randomize(model: torch.nn.Module, scale: float = 0.1) -> None:
    """Every tensor random (norm weights around 1), so a tensor mapped wrong cannot hide.

    At +-0.2 the random network is chaotic enough that float32 rounding alone (complex vs. real
    RoPE arithmetic) grows past 1e-4 within a few tracked frames; at +-0.1 both sides agree to ~1e-6.
    """
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = (torch.rand(tensor.shape, generator=generator) * 2 - 1) * scale
            is_norm_weight = "norm" in name and name.endswith("weight")
            tensor.copy_(noise + 1.0 if is_norm_weight else noise)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    config = parity_config()
    meta = meta_sam2(config)
    randomize(meta)
    tmp = tmp_path_factory.mktemp("sam2")
    torch.save({"model": meta.state_dict()}, tmp / "meta.pt")
    import_sam2(tmp / "meta.pt", tmp / "ours", config=config)
    return meta, Sam2VideoModel.from_pretrained(str(tmp / "ours")).eval()


@pytest.fixture(scope="module")
def video():
    generator = torch.Generator().manual_seed(1)
    frames = torch.randn(FRAMES, 3, 128, 128, generator=generator)
    mask = torch.zeros(128, 128, dtype=torch.bool)
    mask[30:90, 40:100] = True
    return frames, mask


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@torch.no_grad()
def test_image_encoder_features_match(models, video):
    meta, ours = models
    frame = video[0][:1]
    _, meta_feats, meta_pos, _ = meta._prepare_backbone_features(meta.forward_image(frame))
    out = ours.get_image_features(frame)
    for level in range(3):
        assert max_diff(meta_feats[level], out.fpn_hidden_states[level]) <= TOL
        assert max_diff(meta_pos[level], out.fpn_position_encoding[level]) <= TOL


@torch.no_grad()
def test_mask_decoder_matches_for_a_mask_prompt(models, video):
    meta, ours = models
    frame, mask = video[0][:1], video[1][None, None].float()
    _, feats, _, sizes = meta._prepare_backbone_features(meta.forward_image(frame))
    # what Meta's track_step does on a first frame: the no-memory embedding on the top level
    feats[-1] = feats[-1] + meta.no_mem_embed
    maps = [f.permute(1, 2, 0).view(1, -1, *size) for f, size in zip(feats, sizes)]
    _, _, ious, low_res, _, pointer, score = meta._forward_sam_heads(
        maps[-1], mask_inputs=mask, high_res_features=maps[:-1], multimask_output=True
    )
    out = ours._single_frame_forward(pixel_values=frame, input_masks=mask, multimask_output=True)
    assert max_diff(ious, out.iou_scores[:, 0]) <= TOL
    assert max_diff(low_res, out.pred_masks) <= TOL
    assert max_diff(score, out.object_score_logits[:, 0]) <= TOL
    assert max_diff(pointer, out.object_pointer[:, 0]) <= TOL


@torch.no_grad()
def test_six_frame_tracking_matches(models, video, monkeypatch):
    meta, ours = models
    frames, mask = video
    monkeypatch.setattr(sam2_video_predictor, "load_video_frames", lambda **_: (frames, 128, 128))
    state = meta.init_state(video_path="unused")
    meta.add_new_mask(state, frame_idx=0, obj_id=1, mask=mask)
    for _ in meta.propagate_in_video(state):
        pass
    meta_out = state["output_dict_per_obj"][0]

    session = Sam2VideoInferenceSession(video=frames, video_height=128, video_width=128, dtype=torch.float32)
    session.add_mask_inputs(session.obj_id_to_idx(1), 0, mask[None, None].float())
    session.obj_with_new_inputs = [1]
    for t in range(FRAMES):
        out = ours(inference_session=session, frame_idx=t)
        kind = "cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"
        assert max_diff(meta_out[kind][t]["pred_masks"], out.pred_masks) <= TOL, f"frame {t}"
        score = meta_out[kind][t]["object_score_logits"]
        assert max_diff(score.flatten(), out.object_score_logits.flatten()) <= TOL
        # object present: masks and pointers are live, not the "no object" constants
        assert (score > 0).all()


def test_real_hiera_l_layout_maps_completely():
    """Meta's own SAM 2.1 Hiera-L (its hydra config, weights on the meta device) maps key for key."""
    from accelerate import init_empty_weights
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    cfg = compose(config_name="configs/sam2.1/sam2.1_hiera_l.yaml")
    with init_empty_weights():  # parameters on meta; Hiera's drop-path schedule needs real tensors
        meta = instantiate(cfg.model, _recursive_=True)
    state = meta.state_dict()
    config = real_sam2_config()
    shapes = sam2_shapes(config)
    steps = plan_from_original(list(state), config)
    assert plan_problems(steps, state.keys(), shapes) == ""
    # the combine functions run on meta tensors too: shapes without data
    assert {key: tensor.shape for key, tensor in apply_plan(steps, state).items()} == shapes
