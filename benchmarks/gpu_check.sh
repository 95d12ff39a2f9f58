#!/usr/bin/env bash
# One GPU check of the fast training path (issue 12), ≤ 8 minutes on one H100/H200; writes results/gpu/.
#
#   benchmarks/gpu_check.sh [OUT]            # OUT defaults to results/gpu
#   DRY_RUN=1 benchmarks/gpu_check.sh /tmp/x # the same plumbing on the CPU at toy sizes (numbers meaningless)
#
# Sections (each with its own time limit; the log says how long each took):
#   1. environment.json: torch, GPU, the precision `auto` picks, CPU capability
#   2. the CUDA tests (tests/pipeline/test_fast_path.py -k cuda): device batches equal CPU batches,
#      20 training steps + validation on CUDA in bf16, eager and compiled        → cuda_tests.{txt,xml}
#   3. training img/s of every trainable registered model at full size, batch 8 and 64, eager
#      (SWEEP_COMPILE=jasrnet adds compiled rows, ≈ 1 min per shape)           → train_throughput.json
#   4. K = 1, 2, 4 concurrent JASRNet trainings (batch 8, eager) on the one GPU   → concurrent.json
#   5. full JASRNet trained on the shared 300W subset with the paper's optimizer (Adam 5e-5, wd 5e-4,
#      batch 8, 15 copies per epoch, ×0.5 at 1/2 and 3/4 of the epochs; compiled, bf16) for the time
#      left of the 8-minute budget (at least 2 minutes; epochs from section 3's batch-8 img/s), then
#      evaluated on 300W common; its train.json has the compiled img/s       → train/, eval/
# Needs the venv (make install) and the shared datasets (../shared/datasets or $JASRBENCH_TEST_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-results/gpu}
BUDGET=${BUDGET:-480}   # seconds for the whole check
mkdir -p "$OUT"
: > "$OUT/gpu_check.log"
START=$SECONDS
log() { echo "[$((SECONDS - START)) s] $*" | tee -a "$OUT/gpu_check.log"; }

if [ "${DRY_RUN:-0}" = 1 ]; then
  DEV=cpu; BATCHES=2; STEPS=1; WARMUP=1; MODELS=vdsr; COMPILE=""; KS="1 2"; TRAIN_MIN_S=0; CONC_MODEL=vdsr; CONC_TIMEOUT=900
  SWEEP_BATCH8=2
else
  DEV=cuda; BATCHES=8,64; STEPS=10; WARMUP=3; MODELS=all; COMPILE="${SWEEP_COMPILE:-}"; KS="1 2 4"; TRAIN_MIN_S=120; CONC_MODEL=jasrnet; CONC_TIMEOUT=90
  SWEEP_BATCH8=8
  "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu_check.sh: torch sees no CUDA device (DRY_RUN=1 checks the plumbing on a CPU)")'
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export JASRBENCH_MLFLOW=0

log "1. environment"
"$PY" - "$DEV" > "$OUT/environment.json" <<'EOF'
import json, sys, torch
from jasrbench import runtime
dev = torch.device(sys.argv[1])
info = runtime.describe(dev, runtime.resolve_precision("auto", dev), False)
info["auto_precision"] = info.pop("precision")
if dev.type == "cuda":
    p = torch.cuda.get_device_properties(dev)
    info.update(gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version())
print(json.dumps(info, indent=2))
EOF
cat "$OUT/environment.json" >> "$OUT/gpu_check.log"
command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

log "prepare the shared 300W subset"
"$PY" - "$WORK/prepared/300w" <<'EOF'
import sys
from jasrbench.data.prepare import prepare
from jasrbench.paths import test_data_root
prepare("300w", test_data_root() / "300W", sys.argv[1])
EOF

log "2. CUDA tests"
# On the CPU (dry run) they skip with their reason: -rs lists it.
timeout 180 "$PY" -m pytest tests/pipeline/test_fast_path.py tests/pipeline/test_scoring.py tests/metrics/test_image_quality.py -k cuda -q -rs -p no:cacheprovider \
  --junitxml "$OUT/cuda_tests.xml" 2>&1 | tee "$OUT/cuda_tests.txt" || log "CUDA tests FAILED (see cuda_tests.txt)"

log "3. training throughput per model (batches $BATCHES)"
timeout 170 "$PY" benchmarks/gpu_sweep.py --prepared "$WORK/prepared" --device "$DEV" --batches "$BATCHES" \
  --steps "$STEPS" --warmup "$WARMUP" --models "$MODELS" --compile "$COMPILE" \
  --json "$OUT/train_throughput.json" 2>&1 | tail -n 60 >> "$OUT/gpu_check.log" || log "sweep FAILED or timed out"

log "4. concurrent JASRNet trainings"
for K in $KS; do
  pids=()
  for i in $(seq 1 "$K"); do
    timeout "$CONC_TIMEOUT" "$PY" benchmarks/bench_train.py --model "$CONC_MODEL" --batch "$SWEEP_BATCH8" --steps "$((STEPS * 2))" \
      --rounds 1 --warmup "$WARMUP" --compile off --device "$DEV" --prepared "$WORK/prepared" \
      --json "$WORK/conc_${K}_$i.json" > "$WORK/conc_${K}_$i.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    rc=0; wait "$p" || rc=$?
    [ "$rc" = 0 ] || log "a K=$K process failed with exit status $rc (124: over ${CONC_TIMEOUT} s; see logs/conc_${K}_*.log)"
  done
done
mkdir -p "$OUT/logs" && cp "$WORK"/conc_*.log "$OUT/logs/"
"$PY" - "$WORK" "$OUT/concurrent.json" $KS <<'EOF'
import json, sys
from pathlib import Path
from jasrbench.files import atomic_write_json
work, out, ks = Path(sys.argv[1]), sys.argv[2], [int(k) for k in sys.argv[3:]]
rows = []
for k in ks:
    runs = [json.loads(p.read_text()) for p in sorted(work.glob(f"conc_{k}_*.json"))]
    rows.append({"k": k, "finished": len(runs), "img_per_s_each": [r["img_per_s"] for r in runs],
                 "img_per_s_total": sum(r["img_per_s"] for r in runs)})
atomic_write_json(out, {"note": "K processes started together, each timing its own steps", "rows": rows})
print(json.dumps(rows))
EOF

log "5. full JASRNet on the 300W subset for the rest of the budget, then 300W common"
LEFT=$((BUDGET - (SECONDS - START) - 60))   # 60 s kept for validation, samples and evaluation
[ "$LEFT" -lt "$TRAIN_MIN_S" ] && LEFT=$TRAIN_MIN_S
"$PY" - "$OUT" "$WORK" "$LEFT" "$DEV" <<'EOF'
import json, math, sys
from pathlib import Path
from jasrbench import config
from jasrbench.paths import REPO_ROOT
out, work, seconds, dev = Path(sys.argv[1]), Path(sys.argv[2]), max(float(sys.argv[3]), 1.0), sys.argv[4]
params = config.load_profile("paper", REPO_ROOT)
params["data"]["prepared"] = str(work / "prepared")
t = params["train"]
rate = None
try:
    rows = json.loads((out / "train_throughput.json").read_text())["rows"]
    fast = [r for r in rows if r["model"] == "jasrnet" and r.get("batch") == t["batch_size"] and "img_per_s" in r]
    rate = max(r["img_per_s"] for r in fast)
except (OSError, ValueError, KeyError):
    pass
from jasrbench.data.split import load_split
faces = len(load_split(work / "prepared" / "300w" / "train.npz")) - t["val_faces"]
per_epoch = faces * t["copies_per_epoch"]
epochs = max(1, int(seconds * 0.9 * (rate or 1.0) // per_epoch)) if dev == "cuda" else 1
if dev != "cuda":  # dry run: a handful of steps
    t.update(max_faces=16, val_faces=8, copies_per_epoch=1)
    params["models"]["jasrnet"] = {**params["models"]["jasrnet"], "overrides": {"n_feats": 8, "n_shared_blocks": 1}}
t.update(epochs=epochs, milestones=[max(1, epochs // 2), max(1, 3 * epochs // 4)])  # device: --device below
params["evaluate"].update(max_faces=None if dev == "cuda" else 16, bootstrap_resamples=1000)
config.write_params(params, work)
(out / "train_plan.json").write_text(json.dumps({"seconds": seconds, "measured_img_per_s": rate, "epochs": epochs,
                                                 "images_per_epoch": per_epoch}, indent=2))
EOF
cp -r pipelines "$WORK/" 2>/dev/null || true
JASRBENCH_CHECKPOINT_EVERY=0 timeout "$((LEFT + 90))" "$PY" -m jasrbench.cli train jasrnet --dataset 300w --params "$WORK/params.yaml" \
  --out "$WORK/ckpt" --results "$OUT/train" --device "$DEV" 2>&1 | tail -n 20 >> "$OUT/gpu_check.log" \
  || log "training FAILED or timed out"
if [ -f "$WORK/ckpt/model.pt" ]; then
  timeout 120 "$PY" -m jasrbench.cli evaluate "$WORK/ckpt/model.pt" --split 300w/common --out "$OUT/eval" \
    --params "$WORK/params.yaml" --device "$DEV" 2>&1 | tail -n 20 >> "$OUT/gpu_check.log" || log "evaluation FAILED"
fi
log "done in $((SECONDS - START)) s (budget $BUDGET s)"
