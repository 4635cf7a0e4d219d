#!/usr/bin/env bash
# One call on one CUDA GPU, at most ~8 minutes: full-size CBraMod (12 layers, feed-forward 800, d_model 200)
#   1. ECG pre-training (cinc2017 + WFDB + NeuroKit, cinc2017 records held out, EEGMAT excluded) for a fixed
#      wall budget (rt-physio train pretrain --minutes), then
#   2. EEGMAT subject-fold cross-validation folds (python -m rt_physio.experiments.crossval): full-size EEG encoder,
#      ECG encoder initialised from step 1, for the rest of the budget (--max-minutes: no fold is started that
#      the time left cannot hold; the report is rewritten after every fold).
# Everything is written under OUT_DIR and a second call resumes: pre-training continues from its checkpoint
# (or is skipped once finished), finished folds are reused. Results: OUT_DIR/gpu_train.json (summary),
# OUT_DIR/ecg-encoder/{encoder.json,history.json}, OUT_DIR/cv.json, logs in OUT_DIR/*.log.
#
# usage: benchmarks/gpu_train.sh OUT_DIR
# env:   RT_PHYSIO_DATA (default ../shared/data), GPU_TRAIN_BUDGET_S (default 450 s in all),
#        GPU_TRAIN_PRETRAIN_S (default 180 s), PYTHON (default .venv/bin/python),
#        GPU_TRAIN_SMOKE=1: tiny sizes on the CPU in seconds (what the test suite runs; no GPU figure).
set -euo pipefail

OUT=${1:?usage: benchmarks/gpu_train.sh OUT_DIR}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
DATA=${RT_PHYSIO_DATA:-$ROOT/../shared/data}
TOTAL_S=${GPU_TRAIN_BUDGET_S:-450}
PRE_S=${GPU_TRAIN_PRETRAIN_S:-180}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

if [[ "${GPU_TRAIN_SMOKE:-0}" == "1" ]]; then
  MODE=smoke DEVICE=cpu THREADS=1
  PRE=(--layers 1 --ff 32 --epochs 2 --steps-per-epoch 2 --batch-size 8 --holdout 0.25)
  CV=(--fold-size 1 --folds 0 --epochs 1 --eeg-layers 1 --eeg-ff 32 --batch-size 8 --max-train-windows 16)
else
  if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_train.sh: no CUDA GPU visible to torch (set GPU_TRAIN_SMOKE=1 for the CPU smoke run)" >&2
    exit 2
  fi
  MODE=full DEVICE=cuda THREADS=8
  PRE=(--layers 12 --ff 800 --epochs 12 --steps-per-epoch 200 --batch-size 256 --lr 3e-4)
  CV=(--fold-size 4 --epochs 6 --eeg-layers 12 --eeg-ff 800 --batch-size 64)
fi
echo "gpu_train.sh: $MODE run on $DEVICE, budget ${TOTAL_S} s (pre-training ${PRE_S} s), output $OUT"

# 1. ECG pre-training; --minutes ends the chunk after the epoch that reaches it, timeout is the hard stop.
PRE_MIN=$("$PY" -c "print(max(0.05, ($PRE_S - 20) / 60))")
set +e
timeout --signal=INT $((PRE_S + 60)) "$PY" -m rt_physio.cli train pretrain --modality ecg \
  --data "$DATA/cinc2017" "$DATA/wfdb" "$DATA/neurokit" --out "$OUT/ecg-encoder" "${PRE[@]}" \
  --minutes "$PRE_MIN" --resume --device "$DEVICE" --threads "$THREADS" --no-progress >"$OUT/pretrain.log" 2>&1
PRE_RC=$?
set -e
PRE_DONE_S=$(elapsed)
echo "pre-training: exit $PRE_RC after ${PRE_DONE_S} s"; tail -n 3 "$OUT/pretrain.log"

# 2. Cross-validation folds with what is left (30 s kept for the summary).
CV_RC=skipped
LEFT=$(( TOTAL_S - PRE_DONE_S - 30 ))
if [[ -f "$OUT/ecg-encoder/encoder.json" && $LEFT -gt 20 ]]; then
  CV_MIN=$("$PY" -c "print($LEFT / 60)")
  set +e
  timeout --signal=INT $((LEFT + 20)) "$PY" -m rt_physio.experiments.crossval --data "$DATA/eegmat" \
    --out "$OUT/cv" --json "$OUT/cv.json" "${CV[@]}" --ecg-init "$OUT/ecg-encoder" --device "$DEVICE" \
    --threads "$THREADS" --max-minutes "$CV_MIN" >"$OUT/crossval.log" 2>&1
  CV_RC=$?
  set -e
  echo "cross-validation: exit $CV_RC after $(elapsed) s"; tail -n 2 "$OUT/crossval.log"
fi

# 3. Summary JSON.
"$PY" - "$OUT" "$MODE" "$DEVICE" "$PRE_RC" "$CV_RC" "$(elapsed)" "$TOTAL_S" <<'EOF'
import json, sys
from pathlib import Path

import torch

out, mode, device, pre_rc, cv_rc, seconds, budget = sys.argv[1:]
enc = Path(out) / "ecg-encoder" / "encoder.json"
cv = Path(out) / "cv.json"
meta = json.loads(enc.read_text()) if enc.is_file() else {}
report = json.loads(cv.read_text()) if cv.is_file() else {}
summary = {
    "mode": mode,
    "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
    "wall_s": int(seconds),
    "budget_s": int(budget),
    "pretrain": {"exit": int(pre_rc), "architecture": meta.get("architecture"), "epochs": meta.get("epochs"),
                 "epochs_planned": meta.get("epochs_planned"), "finished": meta.get("finished"),
                 "final": meta.get("final"), "train_wall_time_s": meta.get("train_wall_time_s")},
    "crossval": {"exit": cv_rc, "folds_run": report.get("folds_run", []),
                 "folds_skipped_for_time": report.get("folds_skipped_for_time", []),
                 "summary": report.get("summary", {})},
}
(Path(out) / "gpu_train.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"wrote {out}/gpu_train.json")
EOF
# a step stopped at its budget (timeout: 124) is a clean end; any other failure is not
for rc in "$PRE_RC" "$CV_RC"; do
  if [[ "$rc" != 0 && "$rc" != 124 && "$rc" != skipped ]]; then
    echo "gpu_train.sh: a step failed (exit $rc); see $OUT/*.log" >&2
    exit 1
  fi
done
exit 0
