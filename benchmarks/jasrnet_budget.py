"""How many steps the `cpu` profile's JASRNet needs to pass bicubic on validation PSNR (issue 24).

The `cpu` table flags JASRNet's SR as "did not learn" after its 590 steps. The fidelity benchmark
(``fidelity_jasrnet.py``) showed our JASRNet trains as the authors' code does, so the flag is a budget
effect; this measures the budget. It trains JASRNet with the `cpu` recipe unchanged (same seed, batches,
learning rate and milestones; a finished run is never resumed, so this is a fresh run) for ``--epochs``
epochs instead of 10, validates after every epoch as the pipeline does, and finds the first epoch whose
validation PSNR is above bicubic's on the same validation faces (carved from the training split, never
test faces). Since only the epoch count differs, its first 10 epochs are the `cpu` run's; with
``--reference`` (that run's ``history.csv``) it records whether they are bit for bit the same.

Writes ``--json`` (atomically): the validation history, bicubic's validation PSNR/SSIM, the first epoch
and step past bicubic (null if none within ``--epochs``), the seconds per step (validation included) and
the CPU capability.
MLflow is off (a measurement, not a pipeline run); the weights stay in ``--out``. The report's training-health
note cites the result for the profile it was measured on.

Usage (one thread, as `launch --workers 2` runs it; ~2.5 s per step on an AMX Xeon core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/jasrnet_budget.py --prepared datasets/prepared \\
        --epochs 15 --reference results/cpu/train/jasrnet-300w/history.csv --json results/fidelity/jasrnet_budget.json
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JASRBENCH_MLFLOW", "0")

import torch  # noqa: E402

from jasrbench import params as jparams  # noqa: E402
from jasrbench.files import atomic_write_json  # noqa: E402
from jasrbench.paths import REPO_ROOT  # noqa: E402
from jasrbench.runtime import cpu_capability, load_model  # noqa: E402
from jasrbench.scoring import validation_metrics  # noqa: E402
from jasrbench.train import train  # noqa: E402
from jasrbench.training_setup import setup  # noqa: E402


def _history(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--prepared", required=True, help="prepared-data root holding 300w/train.npz")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", help="checkpoint folder (default: a temporary one)")
    ap.add_argument("--reference", help="the profile run's history.csv, to check the shared epochs")
    ap.add_argument("--json", default="results/fidelity/jasrnet_budget.json")
    ap.add_argument("--analyse-only", action="store_true",
                    help="read the finished run in --out again (e.g. with a --reference made after it); no training")
    args = ap.parse_args()

    params = copy.deepcopy(jparams.load_profile(args.profile, REPO_ROOT))
    recipe = jparams.model_train(params, "jasrnet")
    params["models"]["jasrnet"].setdefault("train", {})["epochs"] = args.epochs

    s = setup("jasrnet", "300w", params, prepared=args.prepared, device="cpu")
    bicubic_model, _ = load_model("bicubic", s.dev, protocol=params["data"]["protocol"])
    bicubic = validation_metrics(bicubic_model, s.val, s.dev, s.cfg.batch_size)

    out = Path(args.out or tempfile.mkdtemp(prefix="jasrnet_budget_"))
    if args.analyse_only:  # a finished run of this script in --out: its record read again, no training
        info = json.loads((out / "results" / "train.json").read_text())
        if int(info["epochs"]) != args.epochs:
            raise SystemExit(f"{out}: a run of {info['epochs']} epochs, not --epochs {args.epochs}")
        seconds = json.loads(Path(args.json).read_text())["seconds"] if Path(args.json).is_file() else None
    else:
        start = time.perf_counter()
        info = train("jasrnet", "300w", params, out / "weights", out / "results", prepared=args.prepared,
                     resume=False, device="cpu")
        seconds = time.perf_counter() - start
    history = _history(out / "results" / "history.csv")
    steps_per_epoch = int(info["steps_per_epoch"])
    past = next((row for row in history if row["val_psnr"] > bicubic["val_psnr"]), None)

    shared = None
    if args.reference:
        ref = _history(Path(args.reference))
        keys = ("loss_total", "val_psnr", "val_ssim", "val_nme")
        n = min(len(ref), len(history))
        shared = {"epochs": n, "identical": all(ref[i][k] == history[i][k] for i in range(n) for k in keys),
                  "reference": args.reference}

    atomic_write_json(Path(args.json), {
        "profile": args.profile, "recipe_epochs": recipe["epochs"], "epochs": args.epochs,
        "steps_per_epoch": steps_per_epoch, "batch_size": s.cfg.batch_size, "val_faces": len(s.val_idx),
        "bicubic_val": bicubic,
        "first_epoch_past_bicubic": int(past["epoch"]) if past else None,
        "first_step_past_bicubic": int(past["epoch"]) * steps_per_epoch if past else None,
        "history": history, "shared_epochs_with_reference": shared,
        "seconds": seconds and round(seconds, 1),
        "seconds_per_step_with_validation": seconds and round(seconds / (args.epochs * steps_per_epoch), 3),
        "threads": torch.get_num_threads(), "precision": info.get("precision"),
        "cpu": platform.processor() or platform.machine(), "cpu_capability": cpu_capability(),
        "torch": torch.__version__,
    })
    print(f"bicubic val PSNR {bicubic['val_psnr']:.3f} dB; JASRNet first past it at epoch "
          f"{past and int(past['epoch'])} ({past and int(past['epoch']) * steps_per_epoch} steps); wrote {args.json}")


if __name__ == "__main__":
    main()
