"""`python -m tests.deepspeed_state ZERO`: trains one toy stage-2 step under DeepSpeed ZeRO-ZERO
in bf16 (one process) and prints, as JSON, the bytes its engine holds and the parameter counts."""

import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

from data_tools.synth import synthesize
from sec_train.bench.model import CONFIGS, held_bytes
from sec_train.model.build import build_trainable_model
from sec_train.train.config import load_config
from sec_train.train.loop import Trainer, build_train_loader


def main(zero: int) -> None:
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(29600 + zero))
    cfg = load_config(
        str(CONFIGS / "toy_stage2.yaml"),
        [
            f"deepspeed={CONFIGS / 'deepspeed' / f'zero{zero}.json'}",
            "precision=bf16",
            "wandb.mode=disabled",
            "grad_accum=1",
            "data.train=[]",
        ],
    )
    model = build_trainable_model(cfg.model)
    trainer = Trainer(cfg, model=model)
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(tmp, 2, frames=8, height=64, width=64, objects=2)
        data = dataclasses.replace(cfg.data, train=[str(Path(tmp) / "shards")], num_workers=0)
        batch = next(iter(build_train_loader(dataclasses.replace(cfg, data=data), trainer.unwrapped)))
    trainer.train_step(batch)
    params = list(trainer.unwrapped.parameters())
    print(
        json.dumps(
            {
                "held": held_bytes(trainer),
                "total": sum(getattr(p, "ds_numel", p.numel()) for p in params),
                "trainable": sum(getattr(p, "ds_numel", p.numel()) for p in params if p.requires_grad),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
