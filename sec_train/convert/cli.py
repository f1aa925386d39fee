"""`sec-train import sam2|internvl|sec` and `sec-train export sec`: public checkpoints in and out.

sec-train import sam2 --ckpt sam2.1_hiera_large.pt --out ckpt/sam2.1-l [--num-maskmem 22]
sec-train import internvl --dir InternVL2_5-4B --out ckpt/internvl2.5-4b
sec-train import sec --dir SeC-4B --out ckpt/sec-4b
sec-train export sec --checkpoint runs/stage2/final --out SeC-4B-mine [--reference SeC-4B]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import Sam2VideoConfig

from sec_train.convert.internvl import import_internvl
from sec_train.convert.sam2 import import_sam2
from sec_train.convert.sec import export_sec, import_sec

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _sam2_config(path: str | None) -> Sam2VideoConfig | None:
    return Sam2VideoConfig.from_json_file(path) if path is not None else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sec-train", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    imports = commands.add_parser("import", help="public checkpoint -> framework").add_subparsers(
        dest="kind", required=True
    )
    sam2 = imports.add_parser("sam2", help="Meta's SAM 2 .pt -> Sam2VideoModel directory")
    sam2.add_argument("--ckpt", required=True, help="e.g. sam2.1_hiera_large.pt")
    sam2.add_argument("--out", required=True, help="new directory (ModelConfig.sam2)")
    sam2.add_argument("--num-maskmem", type=int, help="resize the memory bank, e.g. 22 for SeC's stage 1")
    sam2.add_argument("--config", help="Sam2VideoConfig json for a SAM 2 other than 2.1 Hiera-L")
    internvl = imports.add_parser("internvl", help="original InternVL 2.5 dir -> transformers dir")
    internvl.add_argument("--dir", required=True, help="e.g. a download of OpenGVLab/InternVL2_5-4B")
    internvl.add_argument("--out", required=True, help="new directory (ModelConfig.lvlm)")
    sec = imports.add_parser("sec", help="released SeC-4B dir -> framework model directory")
    sec.add_argument("--dir", required=True, help="e.g. a download of OpenIXCLab/SeC-4B")
    sec.add_argument("--out", required=True, help="new model directory (ModelConfig.init)")
    sec.add_argument("--sam2-config", help="Sam2VideoConfig json when the grounding encoder is not Hiera-L")
    exports = commands.add_parser("export", help="framework -> released layout").add_subparsers(
        dest="kind", required=True
    )
    export = exports.add_parser("sec", help="model dir or trainable checkpoint -> SeC-4B layout")
    export.add_argument("--checkpoint", required=True, help="model directory or trainable checkpoint")
    export.add_argument("--out", required=True, help="new directory")
    export.add_argument("--reference", help="the original SeC-4B dir: keep its config entries and code")
    export.add_argument("--dtype", choices=sorted(_DTYPES), help="cast floating tensors (release: bfloat16)")
    return parser


def main(argv: list[str]) -> int:
    """Runs one import/export; argv starts with "import" or "export". Returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if (args.command, args.kind) == ("import", "sam2"):
            import_sam2(args.ckpt, args.out, _sam2_config(args.config), args.num_maskmem)
        elif (args.command, args.kind) == ("import", "internvl"):
            import_internvl(args.dir, args.out)
        elif (args.command, args.kind) == ("import", "sec"):
            import_sec(args.dir, args.out, _sam2_config(args.sam2_config))
        else:
            export_sec(args.checkpoint, args.out, args.reference, _DTYPES.get(args.dtype))
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as err:
        print(f"sec-train {args.command} {args.kind}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def import_main(argv: list[str]) -> int:
    """`sec-train import KIND ...`."""
    return main(["import", *argv])


def export_main(argv: list[str]) -> int:
    """`sec-train export KIND ...`."""
    return main(["export", *argv])
