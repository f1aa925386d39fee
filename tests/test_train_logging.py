"""Run logging: metrics.jsonl after a resume, and the MFU FLOP count."""

from __future__ import annotations

import json

from torch import nn

from sec_train.train.config import load_config
from sec_train.train.run_log import METRICS_FILE, RunLogger, flops_per_token


def test_resumed_run_drops_replayed_records(tmp_path):
    cfg = load_config(None, [f"out_dir={tmp_path}", "wandb.mode=disabled", "max_steps=6"])
    logger = RunLogger(cfg, enabled=True, start_step=0)
    for step in range(1, 6):
        logger.log(step, {"loss": float(step)})
    logger.close()
    resumed = RunLogger(cfg, enabled=True, start_step=3)  # killed after step 5, resumed from 3
    resumed.log(4, {"loss": 40.0})
    resumed.close()
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_flops_per_token_counts_frozen_once_trainable_twice():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 5))
    model[0].requires_grad_(False)
    assert flops_per_token(model) == 4 * (110 + 55) + 2 * 55
