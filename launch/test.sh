#!/usr/bin/env bash
# The test command of the README: installs what it needs, then runs the whole suite on CPU,
# the 2-process DeepSpeed tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install.sh dev
export DS_ACCELERATOR=cpu TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
exec python3 -m pytest -q -p no:cacheprovider "$@"
