"""`python -m sec_train.bench data|step|faults|model|track [--json] ...`: benchmarks that print ratios
against a baseline measured in the same process."""

from __future__ import annotations

import sys

from sec_train.commands import run_command

_BENCHES = {
    "data": ("sec_train.bench.data", "stage-2 samples/s: shard loader vs whole-video decoding vs JPEG bound"),
    "step": ("sec_train.bench.step", "training step time: the trainer vs a bare PyTorch loop"),
    "faults": (
        "sec_train.bench.faults",
        "SIGKILL, damaged files, full disk under ZeRO-2: resumed == uninterrupted",
    ),
    "model": ("sec_train.bench.model", "real recipes at real widths (CPU or CUDA): step time, memory, MFU"),
    "stage2": (
        "sec_train.bench.stage2",
        "stage-2 step: a batch's samples tracked together vs one tracking state per sample",
    ),
    "track": ("sec_train.bench.track", "tracker per-frame inference vs Meta's SAM 2 and transformers"),
}


def main(argv: list[str] | None = None) -> int:
    return run_command("python -m sec_train.bench", _BENCHES, argv)


if __name__ == "__main__":
    sys.exit(main())
