"""`launch/gpu_check.sh` on a machine without a GPU: every command it would run is well-formed and
loads its settings (`--dry-run`), and the time limits add up to under 8 minutes.

The script runs with `DRY_RUN=1` and `python3` / `timeout` replaced by shims that record their
arguments; the recorded bench commands then run in this process with `--dry-run`."""

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

from sec_train.bench.__main__ import main as bench_main

ROOT = Path(__file__).resolve().parents[1]
SHIM = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0")" "$@" "--end--" >> "$SHIM_LOG"
"""


def _recorded_calls(tmp_path: Path) -> list[list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python3", "timeout"):
        (bin_dir / name).write_text(SHIM)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SHIM_LOG": str(log), "DRY_RUN": "1"}
    # a copy of the script, so the runs file it writes lands in tmp_path
    (tmp_path / "launch").mkdir()
    (tmp_path / "launch" / "gpu_check.sh").write_text((ROOT / "launch" / "gpu_check.sh").read_text())
    subprocess.run(["bash", str(tmp_path / "launch" / "gpu_check.sh")], env=env, check=True, timeout=60)
    calls, current = [], []
    for line in log.read_text().splitlines():
        if line == "--end--":
            calls.append(current)
            current = []
        else:
            current.append(line)
    return calls


def test_gpu_check_commands_parse_and_fit_in_8_minutes(tmp_path):
    calls = _recorded_calls(tmp_path)
    assert calls and all(call[0] == "timeout" for call in calls)  # every command has a limit
    limits, benches = [], []
    for call in calls:
        grace = [float(a.split("=")[1]) for a in call if a.startswith("--kill-after=")]
        args = [a for a in call[1:] if not a.startswith("--kill-after")]
        limits.append(float(args[0]) + sum(grace))
        assert args[1:4] == ["python3", "-m", "sec_train.bench"], call
        benches.append(args[4:])
    assert sum(limits) < 8 * 60
    assert [b[0] for b in benches] == ["model"] * 5 + ["track"]
    runs = []
    for bench in benches:
        assert "--dry-run" in bench and "cuda" in bench
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert bench_main(bench) == 0
        runs.append(json.loads(out.getvalue().strip().splitlines()[-1]))
    recipes = {(r["recipe"], r["zero"]) for r in runs[:-1]}
    assert recipes == {
        ("sec_stage2", 2),
        ("sec_stage2", 3),
        ("sec_joint", 2),
        ("sec_joint", 3),
        ("sec_stage1", 2),
    }
    assert all(r["layers"] is None for r in runs[:-1])  # full depth on the GPU
