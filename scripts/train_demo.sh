#!/usr/bin/env bash
# Reproduce the shipped demo models from scratch on the built-in demo data (CPU is fine):
#   1. the demo VQGAN (configs/demo/vqgan.yaml)                   -> models/demo/vqgan.ckpt
#   2. scales 1, 2, 3 of the unconditional chain on that VQGAN      -> models/demo/scale{1,2,3}.ckpt
#   3. scales 1, 2, 3 of the class-conditional chain (cond_drop_prob 0.1, for guidance)
#                                                                   -> models/demo/class_scale{1,2,3}.ckpt
#   4. the caption tokenizer and scales 1, 2, 3 of the text-conditional chain (cond_drop_prob 0.1)
#                                                -> models/demo/tokenizer.json, text_scale{1,2,3}.ckpt
# Chain checkpoints hold EMA weights only. Steps per scale: CHAIN_STEPS, CLASS_STEPS and TEXT_STEPS
# (default 2000 each, the configs' own max_steps; about 10-12 min a scale on 2 quiet CPU cores). 8000 steps lower the
# validation loss but do not give better samples (README, "Training 4x longer does not fix it").
# Extra arguments go to every main.py call, e.g. `bash scripts/train_demo.sh --gpus 0,`.
# Runs land in logs/demo/; the shipped files are only replaced once every step has succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=logs/demo
CHAIN_STEPS=${CHAIN_STEPS:-2000}
CLASS_STEPS=${CLASS_STEPS:-2000}
TEXT_STEPS=${TEXT_STEPS:-2000}
STAGE=$(mktemp -d models/demo-staging.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT

latest_run() { ls -d "$LOGS"/*_"$1" | sort | tail -n 1; }

python main.py --base configs/demo/vqgan.yaml -t -l "$LOGS" -n demo_vqgan "$@"
python scripts/convert_checkpoint.py "$(latest_run demo_vqgan)/checkpoints/last.ckpt" "$STAGE/vqgan.ckpt" \
  --first_stage_only

python scripts/train_tokenizer.py --config configs/demo/text_scale1.yaml --out "$STAGE/tokenizer.json" --vocab_size 160

for chain in scale class_scale text_scale; do
  steps=$CHAIN_STEPS extra=()
  [ "$chain" = class_scale ] && steps=$CLASS_STEPS
  [ "$chain" = text_scale ] && steps=$TEXT_STEPS extra=("model.params.conditioner_config.params.tokenizer=$STAGE/tokenizer.json")
  for t in 1 2 3; do
    python main.py --base "configs/demo/$chain$t.yaml" -t -l "$LOGS" -n "demo_$chain$t" \
      "model.params.first_stage_config.params.ckpt_path=$STAGE/vqgan.ckpt" "lightning.trainer.max_steps=$steps" \
      ${extra[@]+"${extra[@]}"} "$@"
    python scripts/convert_checkpoint.py "$(latest_run "demo_$chain$t")/checkpoints/last.ckpt" \
      "$STAGE/$chain$t.ckpt" --ema_only --drop_first_stage
  done
done

mkdir -p models/demo
mv "$STAGE"/*.ckpt "$STAGE/tokenizer.json" models/demo/
echo "demo models written to models/demo/:"
ls -l models/demo
