#!/usr/bin/env bash
# Several nodes: run this on every node with the same MASTER_ADDR / MASTER_PORT / NNODES and
# this node's NODE_RANK (0 on the node at MASTER_ADDR). torchrun's c10d rendezvous joins them.
# Usage: NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash launch/multi_node.sh RECIPE.yaml [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: launch/multi_node.sh RECIPE.yaml [key=value ...]}
shift
: "${NNODES:?set NNODES}" "${NODE_RANK:?set NODE_RANK}" "${MASTER_ADDR:?set MASTER_ADDR}"
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
exec accelerate launch --config_file configs/accelerate/multi_node.yaml \
  --num_machines "$NNODES" \
  --num_processes $((NNODES * GPUS_PER_NODE)) \
  --machine_rank "$NODE_RANK" \
  --main_process_ip "$MASTER_ADDR" \
  --main_process_port "${MASTER_PORT:-29500}" \
  -m sec_train.train --config "$recipe" "$@"
