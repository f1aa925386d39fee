#!/usr/bin/env bash
# Two CPU processes under DeepSpeed (gloo), the configuration the tests and the demo use.
# Usage: bash launch/cpu_2proc.sh RECIPE.yaml [key=value ...]
#   ZeRO-3: add deepspeed=configs/deepspeed/zero3.json
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: launch/cpu_2proc.sh RECIPE.yaml [key=value ...]}
shift
export DS_ACCELERATOR=cpu WANDB_MODE=${WANDB_MODE:-offline} TOKENIZERS_PARALLELISM=false
exec accelerate launch --config_file configs/accelerate/cpu_2proc.yaml \
  -m sec_train.train --config "$recipe" "$@"
