#!/usr/bin/env bash
# The paper's T-ablation at demo scale: chains of T = 1, 2, 4 reverse steps with ONE total parameter
# budget (about 2.5M transformer parameters per chain) and ONE training budget (STEPS optimizer steps per
# chain, batch 32, split evenly over its scales), evaluated with the demo features on unconditional
# samples and on upper-half completion of validation images (raw and with the kept pixels pasted back).
#
#   bash scripts/ablation_scales.sh                 # everything (about 75 min on 2 CPU cores)
#   STEPS=600 N_EVAL=200 bash scripts/ablation_scales.sh   # a quick look
#   T_LIST="1 2" bash scripts/ablation_scales.sh    # some chains only
#
# T = 1 is the autoregressive baseline: one decoder-only transformer over all tokens (beta_1 = 1).
# Networks per chain (parameters):
#   T=1: GPT 8 x 160 (2.57M)
#   T=2: residual-scaled enc-dec dim 128, enc 3 / dec 2 (1.23M) + GPT 6 x 128 (1.26M)      = 2.50M
#   T=4: 3 x residual-scaled enc-dec dim 96, enc 2 / dec 2, head width 24 (0.61M) + GPT 5 x 96 (0.61M) = 2.43M
# Runs go to $RUNS (default /work/runs/ablation: outside the working tree, so a later session can
# continue them: a scale whose converted checkpoint exists is skipped, an interrupted one resumes).
# Results: $RUNS/results.json and docs/ablation_scales.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/runs/ablation}
STEPS=${STEPS:-6000}
N_EVAL=${N_EVAL:-1000}
T_LIST=${T_LIST:-"1 2 4"}
mkdir -p "$RUNS"
START=$(date +%s)

encdec_overrides() {  # $1 = T, $2 = dim, $3 = enc depth, $4 = dec depth, $5 = head width
  echo "model.params.transformer_config.params.n_scales=$1" \
       "model.params.transformer_config.params.dim=$2" \
       "model.params.transformer_config.params.enc_depth=$3" \
       "model.params.transformer_config.params.dec_depth=$4" \
       "model.params.transformer_config.params.enc_attn_dim_head=$5" \
       "model.params.transformer_config.params.dec_attn_dim_head=$5"
}

train_scale() {  # $1 = T, $2 = t, then overrides
  local T=$1 t=$2; shift 2
  local out="$RUNS/T$T/scale$t.ckpt" name="ablation_T${T}_scale$t"
  [ -f "$out" ] && { echo "T=$T scale $t: done ($out)"; return; }
  local steps=$((STEPS / T)) base alpha
  if [ "$t" -eq "$T" ]; then base=configs/demo/scale3.yaml; else base=configs/demo/scale1.yaml; fi
  if [ "$t" -eq 1 ]; then alpha=0.0; else alpha=1.0; fi
  local common=("model.params.n_scales=$T" "model.params.single_scale=$t" "model.params.alpha=$alpha"
                "lightning.trainer.max_steps=$steps" "lightning.trainer.val_check_interval=$((steps < 500 ? steps : 500))"
                "lightning.callbacks.image_logger.params.batch_frequency=$steps")
  local run
  run=$(ls -d "$RUNS"/logs/*_"$name" 2>/dev/null | sort | tail -n 1 || true)
  if [ -n "$run" ] && [ -f "$run/checkpoints/last.ckpt" ]; then
    python main.py -r "$run" -t
  else
    python main.py --base "$base" -t -l "$RUNS/logs" -n "$name" "${common[@]}" "$@"
    run=$(ls -d "$RUNS"/logs/*_"$name" | sort | tail -n 1)
  fi
  mkdir -p "$RUNS/T$T"
  cp "$(ls "$run"/configs/*-project.yaml | sort | tail -n 1)" "$RUNS/T$T/scale$t.yaml"
  python scripts/convert_checkpoint.py "$run/checkpoints/last.ckpt" "$out" --ema_only --drop_first_stage --force
}

for T in $T_LIST; do
  case $T in
    1) train_scale 1 1 model.params.transformer_config.params.n_layer=8 model.params.transformer_config.params.n_embd=160 ;;
    2) train_scale 2 1 $(encdec_overrides 2 128 3 2 32)
       train_scale 2 2 model.params.transformer_config.params.n_layer=6 model.params.transformer_config.params.n_embd=128 ;;
    4) for t in 1 2 3; do train_scale 4 "$t" $(encdec_overrides 4 96 2 2 24); done
       train_scale 4 4 model.params.transformer_config.params.n_layer=5 model.params.transformer_config.params.n_embd=96 ;;
    *) echo "T=$T has no network sizes in this script" >&2; exit 2 ;;
  esac
  python - "$RUNS/T$T" "$T" <<'EOF'
import sys
from pathlib import Path
from omegaconf import OmegaConf
folder, T = Path(sys.argv[1]), int(sys.argv[2])
OmegaConf.save({"checkpoints": [str(folder / f"scale{t}.ckpt") for t in range(1, T + 1)],
                "configs": [str(folder / f"scale{t}.yaml") for t in range(1, T + 1)]}, folder / "sampling.yaml")
EOF
done
TRAINED=$(date +%s)

# evaluation: one reference, then every chain the same way
STATS="$RUNS/demo_validation_stats.npz"
[ -f "$STATS" ] || python scripts/evaluate.py --samples demo:validation --reference demo:validation \
  --n "$N_EVAL" --save_reference_stats "$STATS" > /dev/null
for T in $T_LIST; do
  cfg="$RUNS/T$T/sampling.yaml"
  python scripts/sample.py --config "$cfg" -n "$N_EVAL" --batch_size 100 --seed 0 --outdir "$RUNS/T$T/samples" --npz
  python scripts/evaluate.py --samples "$RUNS/T$T/samples/samples.npz" --reference "$STATS" --out "$RUNS/T$T/samples.json"
  for paste in paste_back raw; do
    flag=(); [ "$paste" = raw ] && flag=(--no_paste_back)
    python scripts/reconstruct.py --config "$cfg" --images demo:validation --n "$N_EVAL" --mask upper_half \
      "${flag[@]}" --out "$RUNS/T$T/completion_$paste.npz"
    python scripts/evaluate.py --samples "$RUNS/T$T/completion_$paste.npz" --reference "$STATS" \
      --out "$RUNS/T$T/completion_$paste.json"
  done
done
python - "$RUNS" "$T_LIST" "$STEPS" "$((TRAINED - START))" "$(( $(date +%s) - START ))" "$N_EVAL" <<'EOF'
import json, sys
from pathlib import Path
runs, t_list, steps, train_s, total_s = Path(sys.argv[1]), sys.argv[2].split(), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
n_eval = int(sys.argv[6])
rows = {}
for T in t_list:
    read = lambda name: json.loads((runs / f"T{T}" / f"{name}.json").read_text())
    rows[T] = {"samples": read("samples"), "completion_paste_back": read("completion_paste_back"),
               "completion_raw": read("completion_raw")}
(runs / "results.json").write_text(json.dumps({"steps_per_chain": steps, "train_seconds": train_s,
                                               "total_seconds": total_s, "chains": rows}, indent=2) + "\n")
paper = {"1": "12.44 / 11.80", "3": "12.55 / 9.25", "5": "10.69 / 6.87", "9": "10.81 / 6.64"}
lines = ["| T | FID samples | precision / recall | IS-like | FID upper-half completion (pasted back / raw) | paper FFHQ (uncond / completion) |",
         "|---|---|---|---|---|---|"]
for T, r in rows.items():
    s, cp, cr = r["samples"], r["completion_paste_back"], r["completion_raw"]
    lines.append(f"| {T} | {s['fid']:.2f} | {s['precision']:.3f} / {s['recall']:.3f} | {s['inception_score']:.2f} "
                 f"| {cp['fid']:.2f} / {cr['fid']:.2f} | {paper.get(T, '-')} |")
text = ("# T-ablation at demo scale\n\nProduced by `bash scripts/ablation_scales.sh` "
        f"({steps} optimizer steps per chain, batch 32; training {train_s / 60:.0f} min, all {total_s / 60:.0f} min "
        f"on 2 CPU cores). Demo features, against {n_eval} validation images.\n\n" + "\n".join(lines) + "\n")
Path("docs/ablation_scales.md").write_text(text)
print(text)
EOF
