"""The toy recipe learns: toy stage 1, trained in one process on synthetic videos, tracks held-out
synthetic videos (with scene cuts) clearly better than the untrained toy model.

This is the demo's claim in small: random toy weights, the recipe as shipped (only the data, the
run length, the batch and the output directory are overridden), evaluation by `evaluate_model` on videos the
run never saw, loaded back from the run's checkpoint as `sec-train eval` would load it.
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
# The demo's global batch (2 processes x 2) in one process. With batch 2 and 120 steps some runs
# still predicted no object anywhere, which scores ~0.2 from the frames the object is absent.
STEPS, BATCH = 150, 4
# Untrained J&F is ~0.05. With ordered stage-1 clips, runs of this test with data seeds 0 and 1
# went 0.04 -> 0.45 and 0.05 -> 0.48 (the demo: 0.045 -> 0.42); with the shuffled clips of the
# official loader (the default, but not toy_stage1.yaml's, see there), seed 1 went 0.05 -> 0.73.
# The margin is below half of the ordered gain and above the ~0.15 gain of a model that predicts
# nothing.
MARGIN = 0.2
VIDEO = {"frames": 12, "height": 72, "width": 96, "objects": 1}
SEED = 1


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[Path, Path]:
    """Training shards (several, so the loader shuffles between them) and held-out videos."""
    root = tmp_path_factory.mktemp("toy_learns")
    synthesize(root / "train", 16, seed=SEED, shard_bytes=100_000, **VIDEO)
    synthesize(root / "val", 6, seed=SEED + 1, **VIDEO)
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

    untrained = build_sec_model(ModelConfig(mode="stage1", lvlm="toy", sam2="toy"))
    trained = load_model(str(tmp_path), torch.device("cpu"))
    before = evaluate_model(untrained, str(val), use_concept=False)
    after = evaluate_model(trained, str(val), use_concept=False)
    print(f"toy stage 1 J&F on held-out videos: untrained {before['J&F']:.3f}, trained {after['J&F']:.3f}")
    assert after["num_objects"] == before["num_objects"] == 6
    assert after["J&F"] > before["J&F"] + MARGIN, (before, after)
