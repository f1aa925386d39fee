#!/usr/bin/env bash
# The main job on the toy default, CPU only, in about 14 minutes on 2 cores: install, synthetic
# videos, toy stage 1 (SAM 2 learns to track two objects, then to carry a mask across scene cuts),
# toy stage 2 on the concept benchmark from the pretrained toy LVLM (launch/toy_lvlm):
# concept-only, then fused under `accelerate launch` (2 processes, DeepSpeed ZeRO-2) stopped mid-run and resumed; J&F overall
# and after the cut before and after training on held-out concept-cut videos, SAM 2 only vs SeC,
# with ablations (OUT/results.json); a strip of the held-out video SeC helps most across its cut,
# SAM 2 only above SeC (OUT/strip.png); and `sec-train predict` overlays.
# Usage: bash launch/demo.sh [OUT]   (default OUT: runs/demo; data goes to OUT/data)
#        DATA_SEED=1 bash launch/demo.sh runs/demo_seed1   (other training and held-out videos)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
DATA_SEED=${DATA_SEED:-0}
STAGE1_STEPS=${STAGE1_STEPS:-600}
STAGE1_CUT_STEPS=${STAGE1_CUT_STEPS:-400}
CONCEPT_STEPS=${CONCEPT_STEPS:-600}
FUSED_STEPS=${FUSED_STEPS:-100}
VAL_VIDEOS=${VAL_VIDEOS:-96}
# the pretrained toy InternVL stage 2 starts from, as SeC's starts from InternVL 2.5:
# launch/toy_lvlm, made by launch/pretrain_toy_lvlm.py (TRAIN.md, "The toy LVLM is pretrained
# first"); PRETRAIN=1 pretrains one here instead (minutes more; some seeds stay at chance)
TOY_LVLM=${TOY_LVLM:-$PWD/launch/toy_lvlm}
PRETRAIN=${PRETRAIN:-0}
# one thread per process: the two processes of each phase share 2 cores, and idle spinning
# OpenMP threads would otherwise slow the toy model down many times over
export OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

phase() { printf '\n=== %s  [%ds]\n' "$1" "$SECONDS"; }

phase "1/10 install (keeps an existing torch)"
bash launch/install.sh dev

phase "2/10 synthetic videos: two-object videos for stage 1, concept-cut videos for stage 2 and held out"
rm -rf "$OUT"
# Objects wear a stable centre part. Stage 1: ordinary two-object videos, still and moving. Stage 2
# and held out: one object that changes colours and stripes at its scene cut (keeping shape and
# part) while a distractor in its old look appears (TRAIN.md, "The concept benchmark").
seed=$((4 * DATA_SEED))
synth() { sec-data synth --size 128x96 --shard-size 0.0003 "$@"; }
# the four sets at once, sharing the two cores (each is one process); `wait PID` fails on a failure
pids=()
synth --out "$OUT/data/still" --videos 200 --objects 2 --parts --still --no-scene-cuts --frames 6 --seed $seed &
pids+=($!)
synth --out "$OUT/data/moving" --videos 200 --objects 2 --parts --frames 12 --seed $((seed + 1)) &
pids+=($!)
synth --out "$OUT/data/val" --videos "$VAL_VIDEOS" --objects 1 --concept-cut --frames 12 --seed $((seed + 3)) &
pids+=($!)
synth --out "$OUT/data/train" --videos 800 --objects 1 --concept-cut --frames 12 --seed $((seed + 2))
for pid in "${pids[@]}"; do wait "$pid"; done

if [[ "$PRETRAIN" == 1 ]]; then
  phase "3/10 the toy LVLM learns to see, as InternVL arrives pretrained: it names the outlined object's part"
  TOY_LVLM=$OUT/toy_lvlm
  OMP_NUM_THREADS=2 python launch/pretrain_toy_lvlm.py "$TOY_LVLM" --seed "$DATA_SEED"
  # then, as launch/toy_lvlm was made, half of the examples asked as SeC's inference asks
  OMP_NUM_THREADS=2 python launch/pretrain_toy_lvlm.py "$TOY_LVLM" --init "$TOY_LVLM" --seed "$DATA_SEED" \
    --inference-form 0.5 --steps 1000 --lr 1e-3
else
  phase "3/10 the pretrained toy LVLM: $TOY_LVLM"
fi

phase "4/10 toy stage 1: all of the random toy SAM 2 trains to track two objects (2 processes)"
bash launch/cpu_2proc.sh configs/toy_concept_stage1.yaml "data.train=[$OUT/data/still/shards,$OUT/data/moving/shards]" \
  "out_dir=$OUT/stage1" "model.lvlm=$TOY_LVLM" "max_steps=$STAGE1_STEPS" batch_size=2
stage1=$OUT/stage1/checkpoints/$(cat "$OUT/stage1/checkpoints/latest")

phase "5/10 toy stage 1 on scene-cut videos, clips in time order: the memory learns to carry the cut frame's mask"
# SeC's stage 1 trains on the most scene-rich SA-V videos; here the concept-cut training videos.
# In time order a tracked frame after the cut has the cut frame in its memory, so the memory learns
# to follow the object's new look there rather than the distractor in its old one (TRAIN.md, "What
# stop 27 found": the truth on the cut frame then carries further)
bash launch/cpu_2proc.sh configs/toy_concept_stage1.yaml "data.train=[$OUT/data/train/shards]" \
  data.stage1.shuffle=false "out_dir=$OUT/stage1_cuts" "model.init=$stage1" "max_steps=$STAGE1_CUT_STEPS" batch_size=2
stage1=$OUT/stage1_cuts/checkpoints/$(cat "$OUT/stage1_cuts/checkpoints/latest")

phase "6/10 toy stage 2, concept-only: text_hidden_fcs and token_attn learn to find the object from the concept"
bash launch/cpu_2proc.sh configs/toy_concept_only.yaml "data.train=[$OUT/data/train/shards]" \
  "out_dir=$OUT/concept_only" "model.init=$stage1" "max_steps=$CONCEPT_STEPS" batch_size=16
concept_only=$OUT/concept_only/checkpoints/$(cat "$OUT/concept_only/checkpoints/latest")

# The fused phase runs under `launch` with its steps and checkpoints; `stop_at_checkpoint STEP`
# ends the whole launch (SIGTERM, as a cluster's preemption does) once checkpoint STEP is published.
stage2=(configs/toy_concept_only.yaml model.mode=fused "data.train=[$OUT/data/train/shards]"
  "out_dir=$OUT/stage2" "model.init=$concept_only" "max_steps=$FUSED_STEPS"
  "save_every=$((FUSED_STEPS / 2))" batch_size=16)
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

phase "7/10 toy stage 2, fused (memory and concept averaged, as inference runs), stopped mid-run"
stop_at_checkpoint $((FUSED_STEPS / 2))

phase "8/10 toy stage 2 resumed (resume=auto: weights, optimizer, schedule, RNG, data position)"
bash launch/cpu_2proc.sh "${stage2[@]}" resume=auto

phase "9/10 J&F overall and after the cut on held-out videos: untrained vs trained, SAM 2 only vs SeC"
# the shards' headers hold the cut frames the post-cut scores start at
# torchrun's 2 processes score every other video each, as multi-GPU evaluation splits them
torchrun --standalone --nproc-per-node 2 launch/demo_table.py --data "$OUT/data/val/shards" \
  --trained "$OUT/stage2" --json "$OUT/results.json" --ablation

phase "10/10 a held-out video across its cut: SAM 2 only above SeC; predict's overlays"
python launch/demo_strip.py --data "$OUT/data/val/shards" --trained "$OUT/stage2" \
  --results "$OUT/results.json" --out "$OUT/strip.png"
sec-train predict --checkpoint "$OUT/stage2" --video "$OUT/data/val/JPEGImages/synth00000" \
  --mask "$OUT/data/val/Annotations/synth00000/00000.png" --out "$OUT/predict"
echo "overlays: $OUT/predict/overlays/*.png"
phase "done"
