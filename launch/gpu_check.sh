#!/usr/bin/env bash
# The first run on a GPU: real-size training throughput of the three real recipes (full depth,
# random weights, ZeRO-2 and ZeRO-3, one GPU) and the tracker's speed against Meta's SAM 2 and
# transformers. Prints the figures README's GPU rows want; under 8 minutes on one H100/H200.
#   bash launch/gpu_check.sh            (BATCH=8 STEPS=3 to change the step shape)
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
BATCH=${BATCH:-4}
STEPS=${STEPS:-3}
summary() {  # one line per run: recipe, ZeRO, tokens/s, step time, MFU, peak memory, losses
  python3 -c '
import json, sys
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    print(f"{r[\"recipe\"]:<11} zero{r[\"zero\"]}  batch {r[\"batch\"][\"samples\"]}  step {r[\"step_s\"]:.2f} s  "
          f"{r[\"tokens_per_s\"]:.0f} tokens/s  MFU {r[\"mfu\"]:.3f} (of measured bf16 matmul)  "
          f"peak {r[\"memory_gib\"][\"peak\"]:.1f} GiB (planned {r[\"memory_gib\"][\"planned\"][\"total\"]:.1f})  losses {r[\"losses\"]}")
'
}
timeout 330 python3 -m sec_train.bench model --device cuda --batch "$BATCH" --steps "$STEPS" --json \
  --recipe sec_stage2 sec_joint --zero 2 3 | tee runs_gpu_check_model.jsonl | summary
timeout 60 python3 -m sec_train.bench model --device cuda --batch 1 --steps "$STEPS" --json \
  --recipe sec_stage1 --zero 2 | tee -a runs_gpu_check_model.jsonl | summary
timeout 120 python3 -m sec_train.bench track --device cuda --rounds 3 --json | tail -1
