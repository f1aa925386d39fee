"""What `sec-train predict` and `sec-train eval` share: their model options and loading."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from sec_train.checkpoint_layout import find_checkpoint
from sec_train.infer.keyframes import DEFAULT_BANK_SIZE
from sec_train.infer.propagate import PropagationConfig
from sec_train.infer.scene import DEFAULT_THRESHOLD
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.sec import SeCModel
from sec_train.model.weights import CONFIG_FILE, load_model_config

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def add_model_arguments(
    parser: argparse.ArgumentParser, fill_hole_area: int, checkpoint_required: bool = True
) -> None:
    """The checkpoint, device and propagation options of both commands; `fill_hole_area` is the
    command's default (the released predictor fills, SeC's VOS evaluation script does not)."""
    parser.add_argument(
        "--checkpoint",
        required=checkpoint_required,
        help="a SeC model dir, a training checkpoint, or a run dir (its latest checkpoint)",
    )
    parser.add_argument(
        "--sam2-only", action="store_true", help="plain SAM 2 tracking, no LVLM (the baseline)"
    )
    parser.add_argument(
        "--scene-threshold", type=float, default=DEFAULT_THRESHOLD, help="HSV Bhattacharyya distance of a cut"
    )
    parser.add_argument(
        "--bank-size",
        type=int,
        default=DEFAULT_BANK_SIZE,
        help="keyframes the LVLM sees, first frame included",
    )
    parser.add_argument(
        "--memory-selection",
        default="reliable",
        choices=["reliable", "recent"],
        help="memory frames: SeC's recent reliable ones, or plain SAM 2's last ones",
    )
    parser.add_argument(
        "--fill-hole-area",
        type=int,
        default=fill_hole_area,
        help=f"fill mask holes up to this many low-res pixels, 0: off (default {fill_hole_area})",
    )
    parser.add_argument(
        "--overlap",
        default="highest_logit",
        choices=["highest_logit", "lower_id"],
        help="who gets a pixel several objects claim",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda if available)")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", *_DTYPES], help="autocast dtype (auto: bfloat16 on cuda)"
    )


def propagation_config(args: argparse.Namespace, model: SeCModel) -> PropagationConfig:
    """The `PropagationConfig` the parsed options describe.

    A stage-1 model has untrained concept parts, so it runs as plain SAM 2, as the trainer
    validates it.
    """
    use_concept = not args.sam2_only
    if use_concept and model.config.mode == "stage1":
        print(f"{args.checkpoint} is a stage-1 model: running SAM 2 only", file=sys.stderr)
        use_concept = False
    if args.fill_hole_area < 0:
        raise ValueError(f"--fill-hole-area must be >= 0, got {args.fill_hole_area}")
    return PropagationConfig(
        use_concept=use_concept,
        scene_threshold=args.scene_threshold,
        bank_size=args.bank_size,
        memory_selection=args.memory_selection,
        fill_hole_area=args.fill_hole_area,
        overlap=args.overlap,
    )


def resolve_device(name: str) -> torch.device:
    """`auto` -> the first GPU if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_checkpoint(path: str) -> str:
    """A model directory or checkpoint as is; a training run's output dir -> its latest checkpoint."""
    if (Path(path) / CONFIG_FILE).is_file():
        return path
    found = find_checkpoint(path)
    if found is None:
        raise FileNotFoundError(
            f"{path} is neither a SeC model or checkpoint directory ({CONFIG_FILE}) nor a training run "
            "with a complete checkpoint"
        )
    return str(found)


def load_model(checkpoint: str, device: torch.device) -> SeCModel:
    """A model directory, trainable checkpoint or training run (its latest checkpoint), in eval
    mode on `device`, with the mode it was saved with (a stage-1 model stays one)."""
    path = resolve_checkpoint(checkpoint)
    cfg = ModelConfig(init=path, mode=load_model_config(path).mode)
    return build_sec_model(cfg).to(device).eval()


@contextlib.contextmanager
def autocast(device: torch.device, dtype: str) -> Iterator[None]:
    """Autocast in `dtype` (auto: bfloat16 on GPU, none on CPU); float32 disables it."""
    chosen = ("bfloat16" if device.type == "cuda" else "float32") if dtype == "auto" else dtype
    if chosen == "float32":
        yield
        return
    with torch.autocast(device.type, dtype=_DTYPES[chosen]):
        yield
