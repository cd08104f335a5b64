#!/usr/bin/env bash
# The main job, offline: sets up .venv if needed, generates the synthetic mini-IEMOCAP
# (espeak-ng voices, IEMOCAP layout), then runs the whole 5-fold pipeline (preparation,
# fbank feature cache, stage 1 and stage 2 per fold) and prints the table.
#   bash tools/demo.sh            (outputs in results/demo, corpus in data/mini_iemocap)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup_env.sh"
cd "$ROOT"
DATA="${DEMO_DATA:-$ROOT/data/mini_iemocap}"
OUT="${DEMO_OUTPUT:-$ROOT/results/demo}"
START=$(date +%s)
python tools/make_mini_iemocap.py --out_dir "$DATA"
cd recipes/IEMOCAP
python cross_validate.py \
  --data_folder "$DATA/IEMOCAP_full_release" \
  --output_folder "$OUT" \
  --config hparams/demo.yaml "$@"
echo "Demo finished in $(( $(date +%s) - START )) s. Results: $OUT/cv_results.md, report: $OUT/report/README.md"
echo "Classify a wav with fold 1's model:"
echo "  $ROOT/.venv/bin/ser-predict $OUT/fbank_raw_all/fold1/finetune $DATA/IEMOCAP_full_release/Session1/sentences/wav"
