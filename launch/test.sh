#!/usr/bin/env bash
# The test command of the README: installs what it needs, then runs the whole suite on CPU,
# the 2-process DeepSpeed tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install.sh dev
# One OpenMP thread per process: the 2-process DeepSpeed tests share the 2 cores, and toy-sized
# ops gain nothing from more (spinning threads slowed them many times over here).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export DS_ACCELERATOR=cpu TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
# the slowest tests at the end: CI has 30 minutes for the whole run
exec python3 -m pytest -q -p no:cacheprovider --durations=20 "$@"
