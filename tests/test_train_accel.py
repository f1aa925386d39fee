"""DeepSpeed configs: every "auto" of the shipped files is filled from the recipe and model."""

from __future__ import annotations

import json

import pytest
from torch import nn

from sec_train.train.accel import DEEPSPEED_CONFIGS, deepspeed_config
from sec_train.train.config import load_config


@pytest.mark.parametrize("stage", [2, 3])
def test_shipped_configs_fill_from_recipe(stage):
    cfg = load_config(None, ["batch_size=3", "grad_accum=4", "optim.grad_clip=0.5", "precision=bf16"])
    model = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 8))
    ds = deepspeed_config(cfg, str(DEEPSPEED_CONFIGS / f"zero{stage}.json"), model, world_size=2)
    assert "auto" not in json.dumps(ds)
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["gradient_accumulation_steps"] == 4
    assert ds["train_batch_size"] == 3 * 4 * 2 and ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] is True and ds["zero_optimization"]["stage"] == stage
    assert ds["zero_optimization"]["reduce_bucket_size"] == 32 * 32


def test_unknown_auto_is_named(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2, "sub_group_size": "auto"}}))
    with pytest.raises(ValueError, match=r"cannot fill 'auto' for \['zero_optimization.sub_group_size'\]"):
        deepspeed_config(load_config(None), str(path), nn.Linear(2, 2), world_size=1)
