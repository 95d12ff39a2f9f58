#!/usr/bin/env bash
# One GPU check of the fast training path (issues 12, 28), ≤ 8 minutes on one H100/H200 by construction; writes results/gpu/.
#
#   benchmarks/gpu_check.sh [OUT]                       # OUT defaults to results/gpu
#   DRY_RUN=1 DEADLINE=150 benchmarks/gpu_check.sh /tmp/x  # the same plumbing on the CPU at toy sizes (numbers meaningless)
#
# One global deadline (DEADLINE seconds, 480 by default). Section i may run until its mark, a fixed
# share of the deadline counted from the start (MARKS below, per mille, cumulative); its time limit is
# that mark minus the time already used, so a slow section shortens the ones after it and never the
# total, and a section whose mark has passed is skipped (logged). Every command runs under
# `timeout -k 5`; the last mark leaves 6% of the deadline for kill grace and the final log line.
#
# Plan at DEADLINE=480 (per mille → seconds):
#   1. environment.json: torch, GPU, the precision `auto` picks, CPU capability              30 →  14 s
#   2. prepare the shared 300W subset once (reused by every section and the CUDA tests;
#      PREPARED=DIR holding 300w/ skips it)                                                 100 →  48 s
#   3. the CUDA tests (-k cuda over CUDA_TESTS): device batches = CPU batches, fp32
#      prediction = CPU within fp32 rounding, no TF32/autotuning in prediction, training
#      20 steps eager and compiled, …                                    → cuda_tests.{txt,xml}  280 → 134 s
#   4. training img/s per trainable model at full size, batch 8 then 64, eager, JASRNet
#      first; each row written when measured (SWEEP_COMPILE=jasrnet adds compiled rows)
#                                                                     → train_throughput.json  160 →  77 s
#   5. K = 1, 2, 4 concurrent JASRNet trainings (batch 8, eager) on the one GPU → concurrent.json  130 →  62 s
#   6. full JASRNet on the 300W subset with the paper's optimizer (Adam 5e-5, wd 5e-4, batch 8,
#      ×0.5 at 1/2 and 3/4), eager, bf16, sized in *steps* from section 4's eager batch-8 rate
#      and this section's time; an epoch is a quarter of the steps, so model.pt (the best
#      validated epoch) exists after the first quarter               → train/, train_plan.json 170 →  82 s
#   7. that model.pt evaluated on 300W common                                      → eval/   70 →  34 s
#                                                                     kill grace, final log    60 →  29 s
# Needs the venv (make install) and the shared datasets (../shared/datasets or $JASRBENCH_TEST_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-results/gpu}
DEADLINE=${DEADLINE:-${BUDGET:-480}}   # seconds for the whole check (BUDGET: its old name)
MARKS=(30 130 410 570 700 870 940)   # cumulative per mille of DEADLINE: the end of sections 1–7
CUDA_TESTS=${CUDA_TESTS:-"tests/pipeline/test_gpu_path.py tests/pipeline/test_fast_path.py tests/pipeline/test_scoring.py tests/metrics/test_image_quality.py tests/pipeline/test_step.py tests/pipeline/test_compile.py"}
mkdir -p "$OUT"
: > "$OUT/gpu_check.log"
START=$SECONDS
exec 3>&2   # the log goes to the script's own stderr, never into a command's redirected output
log() { echo "[$((SECONDS - START)) s] $*" | tee -a "$OUT/gpu_check.log" >&3; }
# left SECTION: seconds until that section's mark (≤ 0: its time is gone)
left() { echo $(( DEADLINE * MARKS[$1 - 1] / 1000 - (SECONDS - START) )); }
# within SECTION WHAT CMD...: CMD under the section's time limit; logs "WHAT: skipped|stopped|FAILED" and
# returns non-zero when it did not finish (124/137 from timeout: stopped at the limit)
within() {
  local section=$1 what=$2; shift 2
  local t; t=$(left "$section")
  if [ "$t" -lt 2 ]; then log "$what: skipped (section $section's mark, $(( DEADLINE * MARKS[section - 1] / 1000 )) s, has passed)"; return 1; fi
  local rc=0
  timeout -k 5 "$t" "$@" || rc=$?
  case $rc in
    0) ;;
    124|137) log "$what: stopped at section $section's time limit (${t} s)" ;;
    *) log "$what: FAILED (exit status $rc)" ;;
  esac
  return "$rc"
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  DEV=cpu; BATCHES=2; STEPS=1; WARMUP=0; MODELS=vdsr,jasrnet_lr64; KS="1 2"; CONC_MODEL=vdsr; CONC_BATCH=1
  OVERRIDES='{"vdsr": {"n_feats": 8, "depth": 5}, "jasrnet_lr64": {"n_feats": 8, "n_shared_blocks": 1}}'
else
  DEV=cuda; BATCHES=8,64; STEPS=10; WARMUP=3; MODELS=jasrnet,all; KS="1 2 4"; CONC_MODEL=jasrnet; CONC_BATCH=8
  OVERRIDES='{}'
  "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu_check.sh: torch sees no CUDA device (DRY_RUN=1 checks the plumbing on a CPU)")'
fi
log "deadline $DEADLINE s; section marks (s):$(for m in "${MARKS[@]}"; do printf ' %d' $((DEADLINE * m / 1000)); done)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export JASRBENCH_MLFLOW=0

log "1. environment"
within 1 environment "$PY" - "$DEV" > "$OUT/environment.json" <<'EOF' || true
import json, sys, torch
from jasrbench import runtime
dev = torch.device(sys.argv[1])
info = runtime.describe(dev, runtime.resolve_precision("auto", dev), False)
info["auto_precision"] = info.pop("precision")
info["backends"] = runtime.backend_state()  # training's; prediction switches TF32 and autotuning off
if dev.type == "cuda":
    p = torch.cuda.get_device_properties(dev)
    info.update(gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version())
print(json.dumps(info, indent=2))
EOF
cat "$OUT/environment.json" >> "$OUT/gpu_check.log"
command -v nvidia-smi > /dev/null && within 1 nvidia-smi nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

log "2. the shared 300W subset"
PREPARED=${PREPARED:-}
if [ -n "$PREPARED" ] && [ -f "$PREPARED/300w/summary.json" ]; then
  log "reusing $PREPARED/300w"
else
  PREPARED="$WORK/prepared"
  within 2 prepare "$PY" - "$PREPARED/300w" <<'EOF' || true
import sys
from jasrbench.data.prepare import prepare
from jasrbench.paths import test_data_root
prepare("300w", test_data_root() / "300W", sys.argv[1])
EOF
fi
export JASRBENCH_TEST_PREPARED="$PREPARED"   # the tests' prepared_300w fixture reuses it

log "3. CUDA tests"
# On the CPU (dry run) they skip with their reason: -rs lists it.
tests=(); for f in $CUDA_TESTS; do [ -f "$f" ] && tests+=("$f"); done
within 3 "CUDA tests (cuda_tests.txt)" "$PY" -m pytest "${tests[@]}" -k cuda -q -rs -p no:cacheprovider -p no:xdist \
  --junitxml "$OUT/cuda_tests.xml" > "$OUT/cuda_tests.txt" 2>&1 || true
tail -n 5 "$OUT/cuda_tests.txt" >> "$OUT/gpu_check.log"

log "4. training throughput per model (batches $BATCHES)"
within 4 "sweep (the rows so far are kept)" "$PY" benchmarks/gpu_sweep.py --prepared "$PREPARED" --device "$DEV" --batches "$BATCHES" \
  --steps "$STEPS" --warmup "$WARMUP" --models "$MODELS" --compile "${SWEEP_COMPILE:-}" --overrides "$OVERRIDES" \
  --json "$OUT/train_throughput.json" > "$WORK/sweep.log" 2>&1 || true
tail -n 60 "$WORK/sweep.log" >> "$OUT/gpu_check.log"

log "5. concurrent trainings of $CONC_MODEL"
mkdir -p "$OUT/logs"
n=0; nks=$(echo $KS | wc -w)
for K in $KS; do
  n=$((n + 1))
  # each K gets an equal share of what is left of section 5
  t=$(( $(left 5) / (nks - n + 1) ))
  if [ "$t" -lt 5 ]; then log "K=$K: skipped (section 5's time is gone)"; continue; fi
  pids=()
  for i in $(seq 1 "$K"); do
    timeout -k 5 "$t" "$PY" benchmarks/bench_train.py --model "$CONC_MODEL" --batch "$CONC_BATCH" --steps "$((STEPS * 2))" \
      --rounds 1 --warmup "$WARMUP" --compile off --device "$DEV" --prepared "$PREPARED" \
      --json "$WORK/conc_${K}_$i.json" > "$OUT/logs/conc_${K}_$i.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    rc=0; wait "$p" || rc=$?
    case $rc in 0) ;; 124|137) log "a K=$K process: stopped at its time limit (${t} s)" ;;
      *) log "a K=$K process: FAILED (exit status $rc; see logs/conc_${K}_*.log)" ;; esac
  done
done
within 5 concurrent.json "$PY" - "$WORK" "$OUT/concurrent.json" $KS <<'EOF' || true
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

log "6. full JASRNet on the 300W subset, sized in steps"
T6=$(left 6)
within 6 "training plan" "$PY" - "$OUT" "$WORK" "$PREPARED" "$T6" "$DEV" <<'EOF' || true
import json, math, sys
from pathlib import Path
from jasrbench.params import load_profile
from jasrbench.profiles import write_params
from jasrbench.data.split import load_split
from jasrbench.paths import REPO_ROOT
out, work, prepared, seconds, dev = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
params = load_profile("paper", REPO_ROOT)
params["data"]["prepared"] = prepared
t = params["train"]
if dev != "cuda":  # dry run: a tiny JASRNet on a few faces
    t.update(max_faces=16, val_faces=8, batch_size=4)
    params["models"]["jasrnet"] = {**params["models"]["jasrnet"], "overrides": {"n_feats": 8, "n_shared_blocks": 1}}
rate = None  # eager img/s at the training batch, measured by section 4
try:
    rows = json.loads((out / "train_throughput.json").read_text())["rows"]
    rate = max(r["img_per_s"] for r in rows
               if r["model"] == "jasrnet" and r.get("batch") == t["batch_size"] and not r["compile"] and "img_per_s" in r)
except (OSError, ValueError, KeyError):
    pass
# Startup (imports, the split to the device) and validations take the rest; without a measured rate,
# assume 10 steps/s: an epoch is a quarter of the steps, so even 4x too fast a guess leaves model.pt.
overhead = 25.0 if dev == "cuda" else 15.0
steps_per_s = (rate / t["batch_size"]) if rate else 10.0
steps = max(8, int(max(seconds - overhead, 0.0) * 0.7 * steps_per_s)) if dev == "cuda" else 8
n = len(load_split(Path(prepared) / "300w" / "train.npz"))
faces = n - t["val_faces"] if t.get("max_faces") is None else min(t["max_faces"], n - t["val_faces"])
per_epoch = max(2, steps // 4)
epochs = max(1, steps // per_epoch)
# ceil(faces × copies / batch) = per_epoch exactly (half a batch below, so no float rounding adds a step)
t.update(epochs=epochs, copies_per_epoch=(per_epoch - 0.5) * t["batch_size"] / faces,
         milestones=[max(1, epochs // 2), max(1, 3 * epochs // 4)])
params["evaluate"].update(max_faces=None if dev == "cuda" else 16, bootstrap_resamples=1000)
write_params(params, work)
(out / "train_plan.json").write_text(json.dumps({
    "seconds": seconds, "measured_eager_img_per_s": rate, "assumed_steps_per_s": steps_per_s, "steps": per_epoch * epochs,
    "steps_per_epoch": per_epoch, "epochs": epochs, "train_faces": faces, "compile": False}, indent=2))
EOF
cp -r pipelines "$WORK/" 2>/dev/null || true
if [ -f "$WORK/params.yaml" ]; then
  JASRBENCH_COMPILE=false JASRBENCH_CHECKPOINT_EVERY=0 within 6 "training (the best epoch so far is evaluated)" \
    "$PY" -m jasrbench train jasrnet --dataset 300w \
    --params "$WORK/params.yaml" --out "$WORK/ckpt" --results "$OUT/train" --device "$DEV" > "$WORK/train.log" 2>&1 || true
  tail -n 20 "$WORK/train.log" >> "$OUT/gpu_check.log"
fi

log "7. evaluation on 300W common"
if [ -f "$WORK/ckpt/model.pt" ]; then
  within 7 evaluation "$PY" -m jasrbench evaluate "$WORK/ckpt/model.pt" --split 300w/common --out "$OUT/eval" \
    --params "$WORK/params.yaml" --device "$DEV" > "$WORK/eval.log" 2>&1 || true
  tail -n 20 "$WORK/eval.log" >> "$OUT/gpu_check.log"
else
  log "no model.pt to evaluate (training ended before its first epoch)"
fi
log "done in $((SECONDS - START)) s (deadline $DEADLINE s)"
