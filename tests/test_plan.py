"""`sec-train plan`: the state model's bytes per parameter, the modes' activation units, ZeRO-3's
gathered module, the `--check` input rules and the recorded CPU runs it must stay within 15 % of
(the planner against DeepSpeed's real allocation is `tests/test_bench_real.py`)."""

import json
from pathlib import Path

import pytest

from sec_train.model.real import Depth
from sec_train.train.config import load_config
from sec_train.train.plan import CONFIGS, Shape, activation_bytes, check, parameter_counts, plan, state_bytes

# The `python -m sec_train.bench model --json` lines behind README's measured rows
RUNS = Path(__file__).parent / "data" / "plan_runs.jsonl"


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


def test_plan_check_keeps_every_recorded_run_within_15_percent():
    """Stage 2 at 2, 4 and 6 layers and 1 and 2 samples, joint and stage 1 (4 of 8 frames and 5
    of 6 tracked), each under ZeRO-2 and 3: the peak of a run's first step, or of its first two
    for stage 1 under ZeRO-2, whose second step peaks higher (README)."""
    rows = check([str(RUNS)])
    assert {(r["recipe"], r["zero"]) for r in rows} == {
        (recipe, zero) for recipe in ("sec_stage1", "sec_stage2", "sec_joint") for zero in (2, 3)
    }
    assert {r["layers"] for r in rows} >= {2, 4, 6} and {r["samples"] for r in rows} >= {1, 2}
    for row in rows:
        assert 0.85 <= row["planned_over_measured"] <= 1.15, row


def _stage1_activations(tracked: int, objects: int, frames: int = 8, clips: int = 1) -> float:
    cfg = load_config(str(CONFIGS / "sec_stage1.yaml"), [f"model.stage1_tracked_frames={tracked}"])
    return activation_bytes(cfg, Shape(clips, sam_frames=clips * frames, objects=objects), Depth.truncated(2))


def test_stage1_activations_scale_with_tracked_frames_times_objects():
    one = _stage1_activations(tracked=1, objects=1)
    assert one > 0
    assert _stage1_activations(tracked=4, objects=2) == 8 * one
    assert _stage1_activations(tracked=4, objects=2, clips=3) == 24 * one
    # a clip tracks at most its frames after the first (the prompted one)
    assert _stage1_activations(tracked=30, objects=1, frames=8) == 7 * one


def test_zero3_gathers_the_lm_head_except_in_stage1():
    """The largest module a step runs: InternVL 2.5-4B's LM head (151,674 x 2,048), except in
    stage 1, which runs SAM 2 alone (its largest module is a Hiera MLP matrix)."""
    counts = {
        recipe: parameter_counts(load_config(str(CONFIGS / f"{recipe}.yaml"), []), Depth.truncated(2))
        for recipe in ("sec_stage1", "sec_stage2", "sec_joint")
    }
    assert counts["sec_stage2"]["largest"] == counts["sec_joint"]["largest"] == 151_674 * 2048
    assert counts["sec_stage1"]["largest"] < 10**7


@pytest.mark.parametrize("recipe", ["sec_stage1", "sec_stage2", "sec_joint"])
def test_every_recipe_plans_with_checkpointing(recipe):
    """Each real recipe gets a total and a largest batch with checkpointing on, ZeRO-2 and 3
    (stage 1 and fused were "not measured" before their CPU runs)."""
    result = plan(load_config(str(CONFIGS / f"{recipe}.yaml"), []), gpus=8, gpu_memory_gib=80)
    planned = [p for p in result["plans"] if p["activation_checkpointing"]]
    assert [p["zero"] for p in planned] == [2, 3]
    for entry in planned:
        assert entry["memory_gib"]["total"] > entry["memory_gib"]["weights"] > 0
        assert entry["largest_batch"] >= 1
