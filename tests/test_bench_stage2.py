"""`bench stage2` times what it says: both rules on the recipe's mode and batch
(`tests/test_sec_model.py` checks the two rules give the same outputs)."""

import json

import pytest

from sec_train.bench import stage2
from tests.sec_toy_batches import single_thread  # noqa: F401


@pytest.mark.parametrize("mode", ["concept_only", "fused"])
def test_bench_stage2_times_both_rules_on_the_recipe_batch(mode, capsys):
    assert stage2.main(["--json", "--steps", "1", "--warmup", "0", f"model.mode={mode}", "batch_size=3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mode"] == mode and result["batch_size"] == 3
    assert result["together_median_step_s"] > 0 and result["one_by_one_median_step_s"] > 0
