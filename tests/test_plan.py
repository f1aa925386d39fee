"""`sec-train plan`: the state model's bytes per parameter and the `--check` input rules (the
planner against DeepSpeed's real allocation is `tests/test_bench_real.py`)."""

import json

import pytest

from sec_train.train.plan import check, state_bytes


def test_fp32_weights_still_get_a_separate_fp32_partition():
    """DeepSpeed ZeRO copies trainable fp32 weights into its own fp32 partition: 12 bytes of
    optimizer state per trainable parameter whatever the weights' dtype (stage 1 measured
    5,923,712 trainable parameters -> 71,084,544 bytes held)."""
    assert state_bytes(10, 5_923_712, weight=4, zero=2, gpus=1)["optimizer"] == 71_084_544
    assert state_bytes(10, 5_923_712, weight=2, zero=2, gpus=1)["optimizer"] == 71_084_544


def test_check_names_a_run_line_it_cannot_replan(tmp_path):
    runs = tmp_path / "runs.jsonl"
    runs.write_text("warm-up\n" + json.dumps({"recipe": "sec_stage2", "zero": 2}) + "\n")
    with pytest.raises(ValueError, match=r"runs.jsonl:2: a run line without 'overrides'"):
        check([str(runs)])
