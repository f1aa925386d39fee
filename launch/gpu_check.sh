#!/usr/bin/env bash
# The first run on a GPU: real-size training throughput of the three real recipes (full depth,
# random weights, one GPU; sec_stage2 and sec_joint under ZeRO-2 and ZeRO-3, sec_stage1 under
# ZeRO-2) and the tracker's speed against Meta's SAM 2 and transformers. Prints one summary line
# per run (tokens/s, MFU, peak memory against the planner's) and the tracker's JSON; the run
# lines also go to runs_gpu_check_model.jsonl. Each command has its own time limit, so one slow
# or failing run still leaves the others' figures; the limits add up to under 8 minutes.
#   bash launch/gpu_check.sh            (BATCH=8 STEPS=3 to change the step shape)
#   DRY_RUN=1 bash launch/gpu_check.sh  (any machine: each command loads its settings, runs nothing)
set -uo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DRY=${DRY_RUN:+--dry-run}
if [ -z "$DRY" ]; then
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')" || exit 1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fi
BATCH=${BATCH:-4}
STEPS=${STEPS:-2}
OUT=runs_gpu_check_model.jsonl
: > "$OUT"
model() {  # model SECONDS RECIPE ZERO BATCH: one run; its summary line goes to stderr
  timeout --kill-after=5 "$1" python3 -m sec_train.bench model --device cuda --recipe "$2" --zero "$3" \
    --batch "$4" --steps "$STEPS" --json $DRY >> "$OUT" || echo "gpu_check: $2 zero$3 failed or passed its $1 s limit"
}
model 70 sec_stage2 2 "$BATCH"
model 70 sec_stage2 3 "$BATCH"
model 70 sec_joint 2 "$BATCH"
model 70 sec_joint 3 "$BATCH"
model 50 sec_stage1 2 1
timeout --kill-after=5 115 python3 -m sec_train.bench track --device cuda --rounds 3 --json $DRY | tail -1 \
  || echo "gpu_check: bench track failed or passed its 115 s limit"
