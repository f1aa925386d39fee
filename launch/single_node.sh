#!/usr/bin/env bash
# One node, all its GPUs (8 by default), DeepSpeed as the recipe names it.
# Usage: bash launch/single_node.sh RECIPE.yaml [key=value ...]
#   GPUS=4 bash launch/single_node.sh ...   for another GPU count
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: launch/single_node.sh RECIPE.yaml [key=value ...]}
shift
exec accelerate launch --config_file configs/accelerate/single_node_8gpu.yaml \
  --num_processes "${GPUS:-8}" \
  -m sec_train.train --config "$recipe" "$@"
