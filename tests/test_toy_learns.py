"""The toy recipe learns: toy stage 1, trained in one process on two-object synthetic videos,
tracks held-out ones clearly better than the untrained toy model.

This is the demo's stage 1 in small: random toy weights, the recipe as shipped (only the data, the
run length, the batch and the output directory are overridden), evaluation by `evaluate_model` on
videos the run never saw, loaded back from the run's checkpoint as `sec-train eval` would load it.
It trains on two-object videos, as the demo does, and is scored on the demo's held-out concept-cut
videos (one object; after the cut a distractor in its old look joins it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data_tools.synth import synthesize
from sec_train.eval.evaluate import evaluate_model
from sec_train.infer.runtime import load_model
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.train.config import load_config
from sec_train.train.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
# The demo's stage-1 run (300 steps of 4 clips on its 48 two-object videos). Scored on held-out
# two-object videos instead, it went 0.14 -> 0.33 (and 0.10 -> 0.23 when trained on 32 videos of
# data seed 1): the untrained model's empty masks score on the frames where an object has left.
STEPS, BATCH = 300, 4
MARGIN = 0.2
VIDEO = {"frames": 12, "height": 96, "width": 128}
SEED = 0


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[Path, Path]:
    """Two-object training shards (several, so the loader shuffles between them) and held-out
    concept-cut videos (the demo's kind)."""
    root = tmp_path_factory.mktemp("toy_learns")
    synthesize(root / "train", 48, seed=SEED, shard_bytes=200_000, objects=2, parts=True, **VIDEO)
    synthesize(root / "val", 6, seed=SEED + 1, objects=1, concept_cut=True, **VIDEO)
    return root / "train" / "shards", root / "val"


@pytest.mark.slow
def test_trained_toy_stage1_beats_untrained(videos, tmp_path):
    train, val = videos
    cfg = load_config(
        str(ROOT / "configs/toy_stage1.yaml"),
        [f"data.train=[{train}]", "data.val=null", f"out_dir={tmp_path}"]
        + [f"max_steps={STEPS}", f"batch_size={BATCH}", f"seed={SEED}", "wandb.mode=disabled"],
    )
    Trainer(cfg).fit()

    untrained = build_sec_model(ModelConfig(mode="stage1", lvlm="toy_concept", sam2="toy"))
    trained = load_model(str(tmp_path), torch.device("cpu"))
    before = evaluate_model(untrained, str(val), use_concept=False)
    after = evaluate_model(trained, str(val), use_concept=False)
    print(f"toy stage 1 J&F on held-out videos: untrained {before['J&F']:.3f}, trained {after['J&F']:.3f}")
    assert after["num_objects"] == before["num_objects"] == 6
    assert after["J&F"] > before["J&F"] + MARGIN, (before, after)
