"""``jasrbench launch`` (issue 13 item 3) against a sequential ``dvc repro`` of the same DAG.

A reduced profile keeps CI short while exercising the same code as the smoke DAG: the smoke
profile with two models (Bicubic and a tiny EDSR: every stage of ``dvc.yaml`` but pretrain), one
dataset (40 training and 16 test faces of the real 300W subset, linked into a small raw folder)
and the tiny training settings. Two fresh copies of the repository run it: one with
``dvc repro``, one with ``jasrbench launch --workers 2``. The launched copy must give the same
``metrics.json`` (within the smoke regression tolerances, and in fact the same numbers: the
sequential run gets the thread count launch gives each task, since oneDNN's reductions may
depend on it), leave ``dvc status`` clean so that ``dvc repro`` runs nothing, and stream each
stage's log under its name. Then a bad raw path makes ``prepare`` fail:
launch names it, shows its log's tail, runs none of its dependents, records none of them and
exits 1.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from pipeline_helpers import copy_repo, mini_300w
import yaml

from jasrbench import profiles

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.launch import threads_per_task
from jasrbench.paths import REPO_ROOT

pytestmark = pytest.mark.slow

MODELS = ("bicubic", "edsr")
TRAIN_FACES, TEST_FACES = 40, 16


def _copy_repo(dest: Path) -> None:
    copy_repo(dest)


def _mini_300w(w300_root: Path, dest: Path) -> Path:
    return mini_300w(w300_root, dest, TRAIN_FACES, TEST_FACES)


def reduced_params(raw: Path) -> dict:
    """The smoke profile with two models, one dataset and tiny training settings."""
    params = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    params["data"]["datasets"] = {"300w": {"raw": str(raw), "skip_bad": False}}
    params["models"] = {name: params["models"][name] for name in MODELS}
    params.pop("robustness", None)  # the robustness track is the smoke DAG's test (test_smoke_dag.py)
    params["runs"] = {}
    for name in MODELS:
        jdag.set_model_runs(params, name, {"300w": ["300w/common"]})
    params["train"].update({"epochs": 2, "batch_size": 4, "max_faces": 24, "val_faces": 8})
    params["evaluate"].update({"max_faces": TEST_FACES, "bootstrap_resamples": 200})
    return params


def _env(repo: Path) -> dict:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(repo), "JASRBENCH_MLFLOW": "0", "JASRBENCH_DEVICE": "cpu",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    return env


def _run(repo: Path, *cmd: str, timeout: int = 3600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=repo, env={**_env(repo), **env}, capture_output=True, text=True,
                          timeout=timeout)


def _dvc(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return _run(repo, str(Path(sys.executable).parent / "dvc"), *args, **env)


def _launch(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(repo, sys.executable, "-m", "jasrbench", "launch", *args)


def _new_repo(root: Path, params: dict) -> Path:
    _copy_repo(root)
    profiles.write_params(params, root)
    init = _dvc(root, "init", "--no-scm", "-q")
    assert init.returncode == 0, init.stderr
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, w300_root):
    base = tmp_path_factory.mktemp("launch")
    params = reduced_params(_mini_300w(w300_root, base / "raw300w"))
    sequential, launched = _new_repo(base / "sequential", params), _new_repo(base / "launched", params)

    start = time.monotonic()
    threads = str(threads_per_task(2))  # what launch --workers 2 gives each stage
    repro = _dvc(sequential, "repro", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    repro_s = time.monotonic() - start
    assert repro.returncode == 0, (repro.stdout[-3000:], repro.stderr[-3000:])

    start = time.monotonic()
    launch = _launch(launched, "--workers", "2")
    launch_s = time.monotonic() - start
    assert launch.returncode == 0, (launch.stdout[-4000:], launch.stderr[-4000:])
    print(f"\nreduced DAG ({', '.join(MODELS)}): dvc repro {repro_s:.0f} s ({threads} threads), "
          f"launch --workers 2 {launch_s:.0f} s")
    return SimpleNamespace(sequential=sequential, launched=launched, log=launch.stdout + launch.stderr,
                           params=params)


def _metrics(repo: Path) -> dict:
    return json.loads((repo / "results" / "smoke" / "metrics.json").read_text())


def test_launch_gives_the_sequential_metrics(runs, tmp_path):
    """Within the smoke tolerances both ways (the regression gate), and in fact the same numbers."""
    seq, par = _metrics(runs.sequential), _metrics(runs.launched)
    assert set(par["models"]) == set(MODELS)
    tolerances = json.loads((REPO_ROOT / "results" / "smoke" / "expected.json").read_text()).get("tolerances", {})
    for expected, actual in ((seq, runs.launched), (par, runs.sequential)):
        path = tmp_path / "expected.json"
        path.write_text(json.dumps({**expected, "tolerances": tolerances}))
        gate = _run(runs.launched, sys.executable, "-m", "jasrbench", "check", "--expected", str(path),
                    "--actual", str(actual / "results" / "smoke" / "metrics.json"))
        assert gate.returncode == 0, gate.stdout + gate.stderr
    assert par == seq


def test_every_stage_ran_once_under_its_name(runs):
    stages = _dvc(runs.sequential, "stage", "list", "--name-only").stdout.split()
    assert "train@edsr-300w" in stages and "collect" in stages and "prepare@300w" in stages
    for stage in stages:
        assert f"launch: {stage} finished" in runs.log, (stage, runs.log[-3000:])
        assert f"[{stage}] > " in runs.log, stage  # its command, streamed under its name
    assert "[train@edsr-300w] " in runs.log.replace("[train@edsr-300w] > ", "")


def test_status_is_clean_and_repro_does_nothing(runs):
    status = _dvc(runs.launched, "status")
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    again = _dvc(runs.launched, "repro")
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout[-3000:]
    # and launch agrees
    idle = _launch(runs.launched, "--workers", "2")
    assert idle.returncode == 0 and "every stage is up to date" in idle.stdout, idle.stdout + idle.stderr


def test_a_failed_stage_stops_its_dependents_and_is_named(runs):
    """Runs last: a raw path that does not exist makes prepare@300w fail; nothing downstream runs."""
    repo = runs.launched
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    params = copy.deepcopy(runs.params)
    missing = repo.parent / "no-such-300w"
    params["data"]["datasets"]["300w"]["raw"] = str(missing)
    profiles.write_params(params, repo)
    failed = _launch(repo, "--workers", "2")
    out = failed.stdout + failed.stderr
    assert failed.returncode == 1, out[-3000:]
    assert "launch: failed: prepare@300w" in failed.stderr, out[-3000:]
    assert "launch: stage 'prepare@300w' failed" in failed.stderr
    assert str(missing) in failed.stderr.split("launch: stage 'prepare@300w' failed", 1)[1], out[-3000:]  # log tail
    stopped = failed.stderr.split("not run because an upstream stage failed: ", 1)[1].splitlines()[0].split(", ")
    assert {"train@edsr-300w", "evaluate@edsr-300w-300w_common", "evaluate_untrained@bicubic-300w-300w_common",
            "collect", "report"} <= set(stopped), stopped
    for stage in stopped:
        assert f"[{stage}]" not in failed.stdout, stage
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"] == lock_before  # nothing recorded
    status = _dvc(repo, "status", "--json")
    assert "prepare@300w" in json.loads(status.stdout)
