"""`launch/concept_oracle.py`: its frames are the rendered videos' cut frames, its `[SEG]`
concept is the one SeC's propagator computes on the first cut, and training moves only
`token_attn`, the mask decoder and the concept's source."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from data_tools.synth import render_video
from sec_train.infer.keyframes import KeyframeBank
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from tests.launch_scripts import load_launch_script


def test_cut_frames_hold_each_videos_cut_mask_part_and_sec_concept():
    oracle = load_launch_script("concept_oracle")
    model = build_sec_model(ModelConfig(mode="fused"))
    frames = oracle.cut_frames(model, 11, 3)
    propagator = SeCPropagator(model, PropagationConfig())
    size = model.sam_image_size
    for row, seed in enumerate(range(11, 14)):
        video = render_video("v", seed, frames=12, height=96, width=128, objects=1, concept_cut=True)
        cut = video.cuts[0]
        assert frames.parts[row] == video.parts[0]
        truth = torch.from_numpy(video.masks[cut, 0]).float()[None, None]
        nearest = F.interpolate(truth, size=(size, size), mode="nearest")[0, 0] > 0.5
        overlap = (nearest & frames.masks[row]).sum() / (nearest | frames.masks[row]).sum()
        assert overlap > 0.85, overlap
        bank = KeyframeBank(model.lvlm_image_size)
        bank.add(0, video.frames[0], video.masks[0, 0])
        with torch.no_grad():
            concept = propagator.concepts([bank], video.frames[cut])
            torch.testing.assert_close(model.text_hidden_fcs(frames.seg_states[row : row + 1]), concept)


def test_training_moves_only_token_attn_the_mask_decoder_and_the_source():
    oracle = load_launch_script("concept_oracle")
    model = build_sec_model(ModelConfig(mode="fused"))
    frames = oracle.cut_frames(model, 20, 9)
    held_out = oracle.cut_frames(model, 40, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    source = oracle.ConceptSource("seg", model)
    source_before = {k: v.clone() for k, v in source.state_dict().items()}
    args = argparse.Namespace(lr=1e-3, seed=0, steps=2, every=2, loss="bce")
    history = oracle.train(model, source, frames, held_out, args)
    assert [row["step"] for row in history] == [2] and set(history[0]) >= {"own", "zero", "other"}
    state = model.state_dict()
    changed = {".".join(k.split(".")[:2]) for k, v in state.items() if not torch.equal(v, before[k])}
    assert {name for name in changed if not name.startswith("token_attn.")} == {"sam2.mask_decoder"}, changed
    assert any(name.startswith("token_attn.") for name in changed)
    assert all(not torch.equal(v, source_before[k]) for k, v in source.state_dict().items())
    # the source is a fresh copy: the model's own text_hidden_fcs is untouched
    assert all(
        torch.equal(v, before[f"text_hidden_fcs.{k}"]) for k, v in model.text_hidden_fcs.state_dict().items()
    )
