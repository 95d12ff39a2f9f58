"""`dvc exp run --queue` + `dvc queue start -j 2`, and `-S` of any key (issue 13 item 4).

On a git copy of the repository with a reduced profile (the smoke profile with Bicubic and a tiny
EDSR, one dataset: 40 training and 16 test faces of the real 300W subset, linked into a raw folder
*outside* the repository at ``../shared/datasets/300W``, as the profiles name it): two experiments
with different ``train.lr`` are queued and run two at a time in DVC's temporary workspaces. Both
must finish, ``dvc exp show`` must list both with their metrics, and their MLflow training runs
must be in the repository's one store. A second test applies ``-S`` the way DVC does to a key
that changes the DAG and checks the stage list follows (nothing derived can go stale).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import copy_repo, mini_300w

from jasrbench import profiles

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.paths import REPO_ROOT

pytestmark = pytest.mark.slow

MODELS = ("bicubic", "edsr")
TRAIN_FACES, TEST_FACES = 40, 16
LRS = {"lr-low": 1.0e-4, "lr-high": 5.0e-4}


def _copy_repo(dest: Path) -> None:
    copy_repo(dest, (".gitignore",))


def _mini_300w(w300_root: Path, dest: Path) -> Path:
    return mini_300w(w300_root, dest, TRAIN_FACES, TEST_FACES)


def reduced_params() -> dict:
    params = jparams.load_profile("smoke", REPO_ROOT)
    params["data"]["datasets"] = {"300w": {"raw": "../shared/datasets/300W", "skip_bad": False}}
    params["models"], params["runs"] = {name: params["models"][name] for name in MODELS}, {}
    params.pop("robustness", None)  # the robustness track is the smoke DAG's test (test_smoke_dag.py)
    for name in MODELS:
        jdag.set_model_runs(params, name, {"300w": ["300w/common"]})
    params["train"].update({"epochs": 2, "batch_size": 4, "max_faces": 24, "val_faces": 8})
    params["evaluate"].update({"max_faces": TEST_FACES, "bootstrap_resamples": 200})
    jdag.check(params, "reduced profile")
    return params


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    # `python` in the stage commands: this environment's (as `make reproduce` puts .venv/bin first).
    env.update({"JASRBENCH_MLFLOW": "1", "JASRBENCH_DEVICE": "cpu", "OMP_NUM_THREADS": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    return env


def _run(repo: Path, *cmd: str, timeout: int = 900) -> str:
    done = subprocess.run(list(cmd), cwd=repo, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (cmd, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr


def _dvc(repo: Path, *args: str, timeout: int = 900) -> str:
    return _run(repo, str(Path(sys.executable).parent / "dvc"), *args, timeout=timeout)


def _git_repo(base: Path, params: dict) -> Path:
    repo = base / "repo"
    _copy_repo(repo)
    profiles.write_params(params, repo)
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "config", "user.email", "test@example.com")
    _run(repo, "git", "config", "user.name", "test")
    _dvc(repo, "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-q", "-m", "reduced profile")
    return repo


def _experiments(shown) -> dict:
    """{experiment name: its data (params, metrics)} from `dvc exp show --json`, at any depth."""
    found = {}
    if isinstance(shown, dict):
        if shown.get("name") in LRS and isinstance(shown.get("data"), dict):
            found[shown["name"]] = shown["data"]
        for value in shown.values():
            found.update(_experiments(value))
    elif isinstance(shown, list):
        for value in shown:
            found.update(_experiments(value))
    return found


def test_two_queued_experiments_run_two_at_a_time_and_log_to_one_store(tmp_path, w300_root):
    import mlflow

    _mini_300w(w300_root, tmp_path / "shared" / "datasets" / "300W")
    repo = _git_repo(tmp_path, reduced_params())
    assert "linked" in _run(repo, sys.executable, "-m", "jasrbench", "profile", "link")
    for name, lr in LRS.items():  # up to `collect` (the report stage adds minutes and nothing to check here)
        _dvc(repo, "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}", "collect")
    # The workers outlive `dvc queue start` and keep its output open: a file, not a pipe, takes it.
    with open(tmp_path / "queue-start.log", "w") as log:
        started = subprocess.run([str(Path(sys.executable).parent / "dvc"), "queue", "start", "-j", "2"], cwd=repo,
                                 env=_env(), stdout=log, stderr=subprocess.STDOUT, timeout=300)
    assert started.returncode == 0, (tmp_path / "queue-start.log").read_text()[-3000:]
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:
        status = _dvc(repo, "queue", "status")
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(10)
    assert status.count("Success") == 2, (status, _dvc(repo, "queue", "logs", "lr-low")[-3000:])

    shown = _experiments(json.loads(_dvc(repo, "exp", "show", "--json", "--no-pager") or "[]"))
    assert set(shown) == set(LRS), shown.keys()
    for name, lr in LRS.items():
        params = shown[name]["params"]["params.yaml"]["data"]
        metrics = shown[name]["metrics"]
        assert params["train"]["lr"] == lr
        collected = metrics["results/smoke/metrics.json"]["data"]
        assert set(collected["models"]) == set(MODELS)
        assert metrics["results/smoke/train/edsr-300w/train.json"]["data"]["best_val_psnr"] > 0
    # (300W common needs HELEN's test faces, not in this small raw folder: its evaluations say "unavailable".)
    loss = {n: shown[n]["metrics"]["results/smoke/train/edsr-300w/train.json"]["data"]["final_loss"] for n in LRS}
    assert loss["lr-low"] != loss["lr-high"], "two learning rates, one result"

    # One store, in the repository (the temporary workspaces are gone), holding both training runs.
    assert (repo / "mlflow.db").is_file() and not list((repo / ".dvc" / "tmp" / "exps").glob("*/mlflow.db"))
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["jasrbench/smoke/train"], output_format="list",
                              filter_string="tags.model = 'edsr'")
    assert sorted(float(r.data.params["train.lr"]) for r in runs) == sorted(LRS.values())
    assert all(r.info.status == "FINISHED" for r in runs)


def test_set_param_of_a_dag_key_changes_the_stage_list(tmp_path):
    """`-S` edits params.yaml (DVC's hydra overrides) and dvc.yaml's loops read it: the stage list follows."""
    from dvc.repo import Repo
    from dvc.utils.hydra import apply_overrides

    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    params = reduced_params()
    profiles.write_params(params, repo)

    def stage_names() -> set[str]:
        with Repo(str(repo)) as dvc:
            return {s.name for s in dvc.index.stages}

    before = stage_names()
    assert {"train@edsr-300w", "evaluate@edsr-300w-300w_common", "evaluate_untrained@bicubic-300w-300w_common"} <= before
    extra = jdag.runs_for(params, "edsr", {"300w": ["300w/challenge"]})["evaluate"]
    (key, entry), = extra.items()
    flow = "{" + ", ".join(f"{k}: {v}" for k, v in entry.items()) + "}"
    apply_overrides(str(repo / "params.yaml"),
                    ["~runs.evaluate_untrained.bicubic-300w-300w_common", f"+runs.evaluate.{key}={flow}"])
    after = stage_names()
    assert after == (before - {s for s in before if s.startswith("evaluate_untrained@")}) | {f"evaluate@{key}"}
    jparams.load_params(repo / "params.yaml")  # still a valid profile: the new entry matches the code
