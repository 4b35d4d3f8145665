#!/usr/bin/env bash
# The GPU figures of the performance work, in one prepared run (not yet run on a GPU; split it by SIZES /
# BATCHES if one call has a time limit):
# sampling at the released FFHQ sizes for batch 1 / 16 / 64 in fp32 and bf16, with and without
# compiled decode steps (CUDA graphs), and training steps on the FFHQ scale-1 config with bf16,
# fused AdamW and torch.compile, with MFU. Tables go to stdout and JSON rows to $OUT (default
# benchmark_results/). On a CPU the same script runs small settings for a quick check:
#   SIZES=demo BATCHES=1 TOKENS=8 TRAIN_CONFIG=configs/demo/scale1.yaml TRAIN_BATCH=2 TRAIN_STEPS=2 bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmark_results}
SIZES=${SIZES:-ffhq}
BATCHES=${BATCHES:-1,16,64}
TOKENS=${TOKENS:-64}
TRAIN_CONFIG=${TRAIN_CONFIG:-configs/ffhq/4_scales/ffhq-geometric-scale1.yaml}
TRAIN_BATCH=${TRAIN_BATCH:-16}
TRAIN_STEPS=${TRAIN_STEPS:-10}
mkdir -p "$OUT"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
for precision in 32 bf16; do
  echo "## sampling, $precision"
  python benchmarks/sampling.py --sizes "$SIZES" --batch "$BATCHES" --max_tokens "$TOKENS" \
    --modes cached,speculative,compiled --precision "$precision" --out "$OUT/sampling_$precision.json"
done
echo "## training"
python benchmarks/training.py --config "$TRAIN_CONFIG" --batch "$TRAIN_BATCH" --steps "$TRAIN_STEPS" \
  --precision bf16 --modes images,tokens,tokens+compile
