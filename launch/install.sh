#!/usr/bin/env bash
# Installs sec-train and its dependencies into the current Python environment.
# Keeps an existing torch (a user's CUDA build); takes the CPU build 2.13.0 when there is none,
# because an unpinned torch pulls several GB of CUDA packages.
# Usage: bash launch/install.sh [extras]   (default extras: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1:-dev}

if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
# DeepSpeed ships as an sdist whose build imports torch: build it against the torch we have
# instead of letting pip fetch another one into an isolated build environment.
if ! "$PY" -c "import deepspeed" 2>/dev/null; then
  "$PY" -m pip install -q --no-build-isolation "deepspeed>=0.17"
fi
"$PY" -m pip install -q -e ".[${EXTRAS}]"
