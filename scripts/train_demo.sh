#!/usr/bin/env bash
# Reproduce the shipped demo models from scratch on the built-in demo data (CPU is fine):
#   1. the demo VQGAN (configs/demo/vqgan.yaml)      -> models/demo/vqgan.ckpt
#   2. scales 1, 2, 3 of the chain on that VQGAN      -> models/demo/scale{1,2,3}.ckpt (EMA only)
# Extra arguments go to every main.py call, e.g. `bash scripts/train_demo.sh --gpus 0,`.
# Runs land in logs/demo/; the shipped files are only replaced once every step has succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=logs/demo
STAGE=$(mktemp -d models/demo-staging.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT

latest_run() { ls -d "$LOGS"/*_"$1" | sort | tail -n 1; }

python main.py --base configs/demo/vqgan.yaml -t -l "$LOGS" -n demo_vqgan "$@"
python scripts/convert_checkpoint.py "$(latest_run demo_vqgan)/checkpoints/last.ckpt" "$STAGE/vqgan.ckpt" \
  --first_stage_only

for scale in 1 2 3; do
  python main.py --base "configs/demo/scale$scale.yaml" -t -l "$LOGS" -n "demo_scale$scale" \
    "model.params.first_stage_config.params.ckpt_path=$STAGE/vqgan.ckpt" "$@"
  python scripts/convert_checkpoint.py "$(latest_run "demo_scale$scale")/checkpoints/last.ckpt" \
    "$STAGE/scale$scale.ckpt" --ema_only --drop_first_stage
done

mkdir -p models/demo
mv "$STAGE"/*.ckpt models/demo/
echo "demo models written to models/demo/:"
ls -l models/demo
