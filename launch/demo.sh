#!/usr/bin/env bash
# The main job on the toy default, CPU only, in about 15 minutes on 2 cores: install, synthetic
# videos, the toy LVLM's pretraining (it learns to name the outlined object's part) beside toy
# stage 1 (SAM 2 learns to track, reading its memory), toy stage 2 on the concept benchmark under
# `accelerate launch` (2 processes, DeepSpeed ZeRO-2): concept-only, stopped mid-run and resumed,
# then fused; J&F overall and after the cut before and after training on held-out concept-cut
# videos (OUT/results.json), a strip of one held-out video across its cut, SAM 2 only above SeC
# (OUT/strip.png), and `sec-train predict` overlays.
# Usage: bash launch/demo.sh [OUT]   (default OUT: runs/demo; data goes to OUT/data)
#        DATA_SEED=1 bash launch/demo.sh runs/demo_seed1   (other training and held-out videos)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
DATA_SEED=${DATA_SEED:-0}
STAGE1_STEPS=${STAGE1_STEPS:-450}
CONCEPT_STEPS=${CONCEPT_STEPS:-600}
FUSED_STEPS=${FUSED_STEPS:-100}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-2000}
# threads of the evaluation phases (1 where another job shares the cores)
THREADS=${THREADS:-2}
# a toy LVLM pretrained by an earlier run (pretrain_toy_lvlm.py's output) skips its pretraining
TOY_LVLM=${TOY_LVLM:-}
# one thread per process: two processes share the 2 cores in every training phase, and idle
# spinning OpenMP threads would otherwise slow the toy model down many times over
export OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

phase() { printf '\n=== %s  [%ds]\n' "$1" "$SECONDS"; }

phase "1/8 install (keeps an existing torch)"
bash launch/install.sh dev

phase "2/8 synthetic videos: two-object videos for stage 1, concept-cut videos for stage 2 and held out"
rm -rf "$OUT"
# Objects wear a stable centre part. Stage 1: ordinary two-object videos, still and moving. Stage 2
# and held out: one object that changes colours and stripes at its scene cut (keeping shape and
# part) while a distractor in its old look appears (TRAIN.md, "The concept benchmark").
seed=$((4 * DATA_SEED))
pairs=(--objects 2 --parts --size 128x96)
sec-data synth --out "$OUT/data/still" --videos 500 --still --no-scene-cuts --frames 6 --seed $seed "${pairs[@]}"
sec-data synth --out "$OUT/data/moving" --videos 500 --frames 12 --seed $((seed + 1)) "${pairs[@]}"
cuts=(--objects 1 --concept-cut --frames 12 --size 128x96)
sec-data synth --out "$OUT/data/train" --videos 2000 --seed $((seed + 2)) --shard-size 0.0003 "${cuts[@]}"
sec-data synth --out "$OUT/data/val" --videos 16 --seed $((seed + 3)) "${cuts[@]}"

phase "3/8 side by side: the toy LVLM learns to see, as InternVL arrives pretrained; toy stage 1 (one process)"
pretrain=
if [[ -z "$TOY_LVLM" ]]; then
  TOY_LVLM=$OUT/toy_lvlm
  python launch/pretrain_toy_lvlm.py "$TOY_LVLM" --steps "$PRETRAIN_STEPS" --seed "$DATA_SEED" \
    > "$OUT/pretrain_toy_lvlm.log" 2>&1 &
  pretrain=$!
  # a failed stage 1 ends the demo: do not leave the pretraining running behind it
  trap '[[ -z "$pretrain" ]] || kill "$pretrain" 2>/dev/null' EXIT
fi
python -m sec_train.train --config configs/toy_concept_stage1.yaml \
  "data.train=[$OUT/data/still/shards,$OUT/data/moving/shards]" "out_dir=$OUT/stage1" \
  "max_steps=$STAGE1_STEPS" "seed=$DATA_SEED"
if [[ -n "$pretrain" ]]; then
  wait "$pretrain" || { tail -n 20 "$OUT/pretrain_toy_lvlm.log" >&2; exit 1; }
  tail -n 2 "$OUT/pretrain_toy_lvlm.log"
  pretrain=
fi
stage1=$OUT/stage1/checkpoints/$(cat "$OUT/stage1/checkpoints/latest")

# Stage 2 runs under `launch` with its steps and checkpoints; `stop_at_checkpoint STEP` ends
# the whole launch (SIGTERM, as a cluster's preemption does) once checkpoint STEP is published.
# The decoder SAM 2 tracks with stays frozen, as in SeC's released recipe, so "SAM 2 only" after
# stage 2 is stage 1's tracker and every change after the cut is the concept path's.
frozen=(model.trainable.mask_decoder=false "data.train=[$OUT/data/train/shards]" batch_size=16 "seed=$DATA_SEED")
stage2=(configs/toy_concept_only.yaml "${frozen[@]}" "out_dir=$OUT/concept_only" "model.init=$stage1"
  "model.init_lvlm=$TOY_LVLM" "max_steps=$CONCEPT_STEPS" "save_every=$((CONCEPT_STEPS / 2))")
stop_at_checkpoint() {
  local want pid
  want=$(printf 'step-%08d' "$1")
  setsid bash launch/cpu_2proc.sh "${stage2[@]}" &
  pid=$!
  # its own session does not get the terminal's Ctrl-C: pass an interrupt of the demo on
  trap 'kill -TERM -- "-$pid" 2>/dev/null; exit 130' INT TERM
  until [[ "$(cat "$OUT/concept_only/checkpoints/latest" 2>/dev/null)" == "$want" ]]; do
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

phase "4/8 toy stage 2, concept-only (text_hidden_fcs, token_attn; LVLM and decoder frozen), stopped mid-run"
stop_at_checkpoint $((CONCEPT_STEPS / 2))

phase "5/8 the same resumed (resume=auto: weights, optimizer, schedule, RNG, data position)"
bash launch/cpu_2proc.sh "${stage2[@]}" resume=auto

phase "6/8 toy stage 2, fused (memory and concept averaged on the target, as inference does)"
concept_only=$OUT/concept_only/checkpoints/$(cat "$OUT/concept_only/checkpoints/latest")
bash launch/cpu_2proc.sh configs/toy_concept_only.yaml model.mode=fused "${frozen[@]}" "out_dir=$OUT/stage2" \
  "model.init=$concept_only" "max_steps=$FUSED_STEPS" "save_every=$FUSED_STEPS"

phase "7/8 J&F overall and after the cut on held-out videos: untrained vs trained, SAM 2 only vs SeC"
# the shards' headers hold the cut frames the post-cut scores start at
OMP_NUM_THREADS=$THREADS python launch/demo_table.py --data "$OUT/data/val/shards" --trained "$OUT/stage2" \
  --json "$OUT/results.json" --ablation

phase "8/8 a held-out video across its cut: SAM 2 only above SeC; predict's overlays"
OMP_NUM_THREADS=$THREADS python launch/demo_strip.py --data "$OUT/data/val/shards" --trained "$OUT/stage2" --out "$OUT/strip.png"
sec-train predict --checkpoint "$OUT/stage2" --video "$OUT/data/val/JPEGImages/synth00000" \
  --mask "$OUT/data/val/Annotations/synth00000/00000.png" --out "$OUT/predict"
echo "overlays: $OUT/predict/overlays/*.png"
phase "done"
