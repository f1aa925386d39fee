#!/usr/bin/env bash
# The main job on the toy default, CPU only, in about 15 minutes on 2 cores: install, synthetic
# videos, the toy LVLM's pretraining (it learns to name the outlined object's part), toy stage 1
# (SAM 2 learns to track two objects), toy stage 2 on the concept benchmark
# under `accelerate launch` (2 processes, DeepSpeed ZeRO-2) stopped mid-run and resumed, J&F
# overall and after the cut before and after training on held-out concept-cut videos
# (OUT/results.json), a strip of one held-out video across its cut, SAM 2 only above SeC
# (OUT/strip.png), and `sec-train predict` overlays.
# Usage: bash launch/demo.sh [OUT]   (default OUT: runs/demo; data goes to OUT/data)
#        DATA_SEED=1 bash launch/demo.sh runs/demo_seed1   (other training and held-out videos)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
DATA_SEED=${DATA_SEED:-0}
STAGE1_STEPS=${STAGE1_STEPS:-300}
STAGE2_STEPS=${STAGE2_STEPS:-200}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-2000}
# threads of the one-process phases; 1 where another job shares the cores (a descheduled OpenMP
# thread's partner spins: a toy step then takes ten times longer)
THREADS=${THREADS:-2}
# a toy LVLM pretrained by an earlier run (pretrain_toy_lvlm.py's output) skips phase 3
TOY_LVLM=${TOY_LVLM:-}
# one thread per process: the two stage-2 processes share 2 cores, and idle spinning OpenMP
# threads would otherwise slow the toy model down many times over
export OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

phase() { printf '\n=== %s  [%ds]\n' "$1" "$SECONDS"; }

phase "1/8 install (keeps an existing torch)"
bash launch/install.sh dev

phase "2/8 synthetic videos: two-object videos for stage 1, concept-cut videos for stage 2 and held out"
rm -rf "$OUT"
# Objects wear a stable centre part. Stage 1: ordinary videos, two objects to tell apart. Stage 2
# and held out: one object that changes colours and stripes at its scene cut (keeping shape and
# part) while a distractor in its old look appears (TRAIN.md, "The concept benchmark").
video=(--frames 12 --size 128x96 --seed $((3 * DATA_SEED)))
sec-data synth --out "$OUT/data/stage1" --videos 48 --objects 2 --parts "${video[@]}" --shard-size 0.0003
video[-1]=$((3 * DATA_SEED + 1))
sec-data synth --out "$OUT/data/train" --videos 64 --objects 1 --concept-cut "${video[@]}" --shard-size 0.0003
video[-1]=$((3 * DATA_SEED + 2))
sec-data synth --out "$OUT/data/val" --videos 8 --objects 1 --concept-cut "${video[@]}"

phase "3/8 the toy LVLM learns to see, as InternVL arrives pretrained: it names the outlined object's part"
if [[ -z "$TOY_LVLM" ]]; then
  TOY_LVLM=$OUT/toy_lvlm
  OMP_NUM_THREADS=$THREADS python launch/pretrain_toy_lvlm.py "$TOY_LVLM" --steps "$PRETRAIN_STEPS" --seed "$DATA_SEED"
fi

phase "4/8 toy stage 1: all of the random toy SAM 2 trains (one process)"
OMP_NUM_THREADS=$THREADS python -m sec_train.train --config configs/toy_stage1.yaml \
  "data.train=[$OUT/data/stage1/shards]" data.val=null "out_dir=$OUT/stage1" "model.lvlm=$TOY_LVLM" \
  "max_steps=$STAGE1_STEPS" batch_size=4
stage1=$OUT/stage1/checkpoints/$(cat "$OUT/stage1/checkpoints/latest")

# Stage 2 runs under `launch` with its steps and checkpoints; `stop_at_checkpoint STEP` ends
# the whole launch (SIGTERM, as a cluster's preemption does) once checkpoint STEP is published.
stage2=(configs/toy_concept_stage2.yaml "data.train=[$OUT/data/train/shards]" data.val=null
  "out_dir=$OUT/stage2" "model.init=$stage1" "max_steps=$STAGE2_STEPS"
  "save_every=$((STAGE2_STEPS / 2))" batch_size=2)
stop_at_checkpoint() {
  local want pid
  want=$(printf 'step-%08d' "$1")
  setsid bash launch/cpu_2proc.sh "${stage2[@]}" &
  pid=$!
  # its own session does not get the terminal's Ctrl-C: pass an interrupt of the demo on
  trap 'kill -TERM -- "-$pid" 2>/dev/null; exit 130' INT TERM
  until [[ "$(cat "$OUT/stage2/checkpoints/latest" 2>/dev/null)" == "$want" ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      echo "stage 2 ended before checkpoint $want" >&2
      return 1
    fi
    sleep 1
  done
  kill -TERM -- "-$pid"
  wait "$pid" || true
  trap - INT TERM
  printf '\nstopped stage 2 after its checkpoint %s\n' "$want"
}

phase "5/8 toy stage 2, fused (LoRA, embeddings, projector, text_hidden_fcs, token_attn), stopped mid-run"
stop_at_checkpoint $((STAGE2_STEPS / 2))

phase "6/8 toy stage 2 resumed (resume=auto: weights, optimizer, schedule, RNG, data position)"
bash launch/cpu_2proc.sh "${stage2[@]}" resume=auto

phase "7/8 J&F overall and after the cut on held-out videos: untrained vs trained, SAM 2 only vs SeC"
# the shards' headers hold the cut frames the post-cut scores start at
python launch/demo_table.py --data "$OUT/data/val/shards" --trained "$OUT/stage2" \
  --json "$OUT/results.json" --ablation

phase "8/8 a held-out video across its cut: SAM 2 only above SeC; predict's overlays"
python launch/demo_strip.py --data "$OUT/data/val/shards" --trained "$OUT/stage2" --out "$OUT/strip.png"
sec-train predict --checkpoint "$OUT/stage2" --video "$OUT/data/val/JPEGImages/synth00000" \
  --mask "$OUT/data/val/Annotations/synth00000/00000.png" --out "$OUT/predict"
echo "overlays: $OUT/predict/overlays/*.png"
phase "done"
