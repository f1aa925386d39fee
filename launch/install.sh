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

# --- test-only (dev extras): Meta's sam2 package, for tests/test_convert_sam2_parity.py ---
# --no-deps: sam2 declares torchvision, which drags a CUDA torch, yet its modeling code needs
# neither torchvision nor its CUDA extension (SAM2_BUILD_CUDA=0); no build isolation, so the build
# uses the torch above. hydra-core caps omegaconf < 2.4 but runs with 2.4, so it comes --no-deps
# too; the rest of what both need is the `parity` extra.
if [[ ",${EXTRAS}," == *",dev,"* ]] && ! "$PY" -c "import sam2" 2>/dev/null; then
  "$PY" -m pip install -q -e ".[parity]"
  SAM2_BUILD_CUDA=0 "$PY" -m pip install -q --no-deps --no-build-isolation "sam2==1.1.0" "hydra-core==1.3.8"
fi
