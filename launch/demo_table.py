"""The demo's results table: J, F, J&F and LVLM calls of the untrained toy SeC and a trained one,
each with plain SAM 2 tracking and with SeC's concept guidance, on the same held-out videos.

    python launch/demo_table.py --data runs/demo/data/val --trained runs/demo/stage2
"""

from __future__ import annotations

import argparse
import sys

import torch

from sec_train.eval.evaluate import evaluate_model
from sec_train.infer.runtime import load_model
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.sec import SeCModel

COLUMNS = ("J", "F", "J&F")


def score_rows(models: dict[str, SeCModel], data: str) -> list[dict]:
    """One row per (model, tracking): the model name, "SAM 2 only" or "SeC", J, F, J&F and
    LVLM calls over all videos of `data`."""
    rows = []
    for name, model in models.items():
        for tracking, use_concept in (("SAM 2 only", False), ("SeC", True)):
            print(f"--- {name}, {tracking}", file=sys.stderr)
            with torch.no_grad():
                scores = evaluate_model(model, data, use_concept=use_concept)
            rows.append({"model": name, "tracking": tracking, **scores})
    return rows


def format_rows(rows: list[dict]) -> str:
    """The rows as a Markdown table (it reads as plain text too)."""
    lines = [
        "| model | tracking | J | F | J&F | LVLM calls |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        scores = " | ".join(f"{100 * row[key]:.1f}" for key in COLUMNS)
        frames = round(row["lvlm_calls"] / row["lvlm_calls_per_frame"]) if row["lvlm_calls"] else None
        calls = f"{int(row['lvlm_calls'])}" + (f" / {frames} frames" if frames else "")
        lines.append(f"| {row['model']} | {row['tracking']} | {scores} | {calls} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="held-out videos: DAVIS-style root or shard dir")
    parser.add_argument("--trained", required=True, help="a training run, checkpoint or model dir")
    args = parser.parse_args(argv)
    models = {
        "untrained": build_sec_model(ModelConfig(mode="concept_only", lvlm="toy", sam2="toy")),
        "trained": load_model(args.trained, torch.device("cpu")),
    }
    rows = score_rows(models, args.data)
    videos, objects = int(rows[0]["num_videos"]), int(rows[0]["num_objects"])
    print(f"\nheld-out videos {args.data}: {videos} videos, {objects} objects; scores x100")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
