"""Concept-only segmentation at scene cuts (`sec_train.eval.concept`): the concept alone reaches
the mask, with the keyframe bank SeC builds, and the score is the IoU of those masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_tools.synth import synthesize
from sec_train.eval.concept import concept_only_iou, concept_only_masks, cut_frame_concept, cut_videos
from sec_train.eval.metrics import db_eval_iou
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("concept_cut")
    synthesize(root, 2, seed=3, frames=8, height=48, width=64, objects=1, concept_cut=True)
    return str(root / "shards")


def test_the_concept_alone_steers_the_cut_frame_mask_and_the_score_is_its_iou(data):
    torch.manual_seed(0)
    model = build_sec_model(ModelConfig(mode="fused", lvlm="toy", sam2="toy"))
    propagator = SeCPropagator(model, PropagationConfig())
    videos = cut_videos(data)
    assert len(videos) == 2
    with torch.no_grad():
        concepts = [cut_frame_concept(propagator, video) for video in videos]
        assert concepts[0].shape == (1, 256) and not torch.allclose(concepts[0], concepts[1])
        video = videos[0]
        masks = concept_only_masks(propagator, video, torch.cat([concepts[0], 50 * torch.randn(1, 256)]))
        alone = concept_only_masks(propagator, video, concepts[0])
    assert masks.shape == (2, *video.labels(0).shape) and (masks[0] != masks[1]).any()
    assert (masks[0] == alone[0]).mean() > 0.99  # a concept's mask does not depend on its batch
    truth = [v.labels(v.scene_cuts[0]) == 1 for v in videos]
    with torch.no_grad():
        own = [concept_only_masks(propagator, v, c)[0] for v, c in zip(videos, concepts)]
    expected = np.mean(db_eval_iou(np.stack(truth), np.stack(own)))
    assert concept_only_iou(model, data) == pytest.approx(expected)
