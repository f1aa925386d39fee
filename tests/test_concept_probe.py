"""`launch/concept_probe.py`'s memory-reading measure: its plain tracking is SeC's plain SAM 2
tracking frame for frame, and with the truth given at the cut the cut frame's mask is the truth."""

from __future__ import annotations

import numpy as np
import torch

from data_tools.synth import synthesize
from sec_train.eval.concept import cut_videos
from sec_train.eval.metrics import db_eval_iou
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from tests.launch_scripts import load_launch_script


def test_tracking_after_the_cut_matches_plain_sam2_and_takes_the_truth_when_given(tmp_path):
    synthesize(tmp_path, 1, seed=3, frames=8, height=48, width=64, objects=1, concept_cut=True)
    (video,) = cut_videos(str(tmp_path / "shards"))
    torch.manual_seed(0)
    model = build_sec_model(ModelConfig(mode="fused", lvlm="toy", sam2="toy"))
    probe, cut = load_launch_script("concept_probe"), video.scene_cuts[0]
    with torch.no_grad():
        plain = probe.tracked_after_cut(SeCPropagator(model, PropagationConfig()), video, truth_at_cut=False)
        given = probe.tracked_after_cut(SeCPropagator(model, PropagationConfig()), video, truth_at_cut=True)
        sam2_only = SeCPropagator(model, PropagationConfig(use_concept=False)).run(video)
        expected = [db_eval_iou(video.labels(t) == 1, labels == 1) for t, _, labels in sam2_only if t >= cut]
    assert len(plain) == len(given) == len(video) - cut
    np.testing.assert_allclose(plain, expected, atol=1e-6)
    assert given[0] > 0.9 and abs(given[0] - plain[0]) > 0.1
