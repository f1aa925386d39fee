"""Concept-only segmentation at scene cuts (`sec_train.eval.concept`): the concept alone reaches
the mask, with the keyframe bank SeC builds, and the score is the IoU of those masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_tools.synth import synthesize
from sec_train.eval.concept import concept_only_iou, concept_only_mask, cut_frame_concept, cut_videos, iou
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("concept_cut")
    synthesize(root, 2, seed=3, frames=8, height=48, width=64, objects=1, concept_cut=True)
    return str(root / "shards")


def test_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2], b[1:3] = True, True
    assert iou(a, b) == pytest.approx(4 / 12) and iou(a, a) == 1 and iou(~b & b, ~b & b) == 0


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
        masks = [concept_only_mask(propagator, video, c) for c in (concepts[0], 50 * torch.randn(1, 256))]
    assert masks[0].shape == video.labels(0).shape and (masks[0] != masks[1]).any()
    truth = [v.labels(v.scene_cuts[0]) == 1 for v in videos]
    with torch.no_grad():
        own = [concept_only_mask(propagator, v, c) for v, c in zip(videos, concepts)]
    assert concept_only_iou(model, data) == pytest.approx(np.mean([iou(m, t) for m, t in zip(own, truth)]))
