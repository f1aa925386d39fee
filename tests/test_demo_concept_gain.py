"""The demo shows what SeC is for, at its fixed seeds: `bash launch/demo.sh` end to end (synthetic
videos, toy stage 1, concept-only and fused stage 2 under `accelerate launch`, stopped and resumed,
the table), then on its held-out concept-cut videos the trained model tracks the object after the
cut better with its concept than with SAM 2's memory alone, and its concept alone finds the object
on the cut frame better than the untrained model's. A regression anywhere on the concept path
(LVLM, `[SEG]`, `text_hidden_fcs`, `token_attn`, fusion) fails here. The longest test: ~14 minutes
on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_trains_sec_past_sam2_after_the_cut(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "DATA_SEED": "0"}
    run = subprocess.run(
        ["bash", "launch/demo.sh", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    (tmp_path / "demo.log").write_text(run.stdout + run.stderr)  # the table, for a look afterwards
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    trained, untrained = results["trained"], results["untrained"]
    assert trained["sec"]["J&F_post_cut"] >= trained["sam2_only"]["J&F_post_cut"] + 0.05
    assert trained["sec"]["J&F"] > trained["sam2_only"]["J&F"]
    assert trained["concept_only_iou"] > untrained["concept_only_iou"]
    # the ablations: the gain is the concept's and token_attn's
    assert trained["sec_zero_concept"]["J&F_post_cut"] < trained["sec"]["J&F_post_cut"]
    assert trained["sec_untrained_token_attn"]["J&F_post_cut"] < trained["sec"]["J&F_post_cut"]
    assert (out / "strip.png").stat().st_size > 0
