"""A rerun is never stale (issue 10): on a copy of the repository, through `dvc repro` of one train stage.

The issue's scenario: a finished run, then a change to its model's source, then a rerun. The old
code resumed the finished ``last.pt``, trained nothing and recorded the new code as if it had
produced the old weights. Here the rerun must retrain (new weights, new history, no resume); a
forced rerun with nothing changed must give identical numbers; and an interrupted run whose code
changed meanwhile must not be resumed (its fingerprint names the file).

One tiny EDSR (the smallest smoke settings: 8 training faces, 4 validation faces, one epoch),
MLflow off, DVC without git; only the package, the profiles and ``dvc.yaml`` are copied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from pipeline_helpers import tiny_params

from jasrbench import profiles
from jasrbench.paths import REPO_ROOT

STAGE = "train@edsr-300w"
EDSR = "jasrbench/models/edsr.py"
DEFAULT = 'n_blocks=16, n_feats=64, res_scale=1.0)'  # the registered `edsr` defaults (res_scale not overridden)


def _copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", "jasrbench", "pipelines",
                            "dvc.yaml", ".dvcignore"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO_ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, dest / name)


def _dvc(repo: Path, env: dict, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr


def _outputs(repo: Path) -> dict:
    out, res = repo / "models" / "smoke" / "edsr-300w", repo / "results" / "smoke" / "train" / "edsr-300w"
    summary = json.loads((res / "train.json").read_text())
    return {"weights": torch.load(out / "model.pt", map_location="cpu", weights_only=True)["state_dict"],
            "history": pd.read_csv(res / "history.csv").drop(columns=["img_per_s"]),
            "metrics": {k: v for k, v in summary.items() if k != "img_per_s"},
            "last_pt": (out / "last.pt").exists()}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_code_change_retrains_and_forced_rerun_reproduces(prepared_root, tmp_path):
    repo = tmp_path / "repo"
    _copy(repo)
    src = (repo / EDSR).read_text()
    assert src.count(DEFAULT) == 1
    (repo / "datasets" / "prepared" / "300w").mkdir(parents=True)
    (repo / "datasets" / "prepared" / "300w" / "train.npz").symlink_to(prepared_root / "300w" / "train.npz")
    params = tiny_params(prepared_root, epochs=1, max_faces=8, val_faces=4, milestones=[1])
    params["data"]["prepared"] = "datasets/prepared"
    profiles.write_params(params, repo)
    env = {**os.environ, "PYTHONPATH": str(repo), "JASRBENCH_MLFLOW": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    _dvc(repo, env, "init", "--no-scm", "-q")

    _dvc(repo, env, "repro", "-s", STAGE)
    first = _outputs(repo)
    assert not first["last_pt"], "a finished run must not leave a resumable last.pt"

    # The model's source changes (the registered EDSR's residual scale): the rerun trains anew.
    (repo / EDSR).write_text(src.replace(DEFAULT, DEFAULT.replace("res_scale=1.0", "res_scale=0.5")))
    log = _dvc(repo, env, "repro", "-s", STAGE)
    assert f"Running stage '{STAGE}'" in log and "resuming" not in log, log[-3000:]
    changed = _outputs(repo)
    assert not _same_weights(first["weights"], changed["weights"])
    assert not first["history"].equals(changed["history"])

    # Nothing changes, the rerun is forced: identical weights, history and metrics.
    _dvc(repo, env, "repro", "-f", "-s", STAGE)
    again = _outputs(repo)
    assert _same_weights(changed["weights"], again["weights"])
    pd.testing.assert_frame_equal(changed["history"], again["history"])
    assert changed["metrics"] == again["metrics"]

    # An interrupted run of the changed code, then the code is reverted: its last.pt is not resumed,
    # the log names the file that differs, and the result is the first run's again.
    stopped = subprocess.run([sys.executable, "-m", "jasrbench.cli", "train", "edsr", "--dataset", "300w",
                              "--out", "models/smoke/edsr-300w", "--results", "results/smoke/train/edsr-300w",
                              "--stop-after-steps", "1"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert (repo / "models" / "smoke" / "edsr-300w" / "last.pt").is_file()
    (repo / EDSR).write_text(src)
    log = _dvc(repo, env, "repro", "-s", STAGE)
    assert f"last.pt not resumed: its code ({EDSR}) differs" in log and "resuming" not in log, log[-3000:]
    back = _outputs(repo)
    assert _same_weights(first["weights"], back["weights"])
    pd.testing.assert_frame_equal(first["history"], back["history"])
    assert first["metrics"] == back["metrics"]
