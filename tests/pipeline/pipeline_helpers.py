"""Helpers of the pipeline tests: tiny but real training configurations and CLI subprocesses."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

from jasrbench import profiles

import jasrbench.params as jparams
from jasrbench.paths import REPO_ROOT


def tiny_params(prepared_root: Path, **train) -> dict:
    """The smoke profile, trimmed to seconds: 24 training faces, 8 validation faces, batch 4."""
    params = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    params["data"]["prepared"] = str(prepared_root)
    params["train"].update({"epochs": 2, "batch_size": 4, "max_faces": 24, "val_faces": 8})
    params["train"].update(train)
    params["evaluate"].update({"max_faces": 24, "bootstrap_resamples": 200})
    return params


def write_params(root: Path, params: dict) -> Path:
    """A repository-like folder with ``pipelines/`` and a ``params.yaml`` holding ``params``."""
    shutil.copytree(REPO_ROOT / "pipelines", root / "pipelines", dirs_exist_ok=True)
    profiles.write_params(params, root)
    return root / "params.yaml"


def cli_env() -> dict:
    """Environment for running the ``jasrbench`` CLI of this checkout in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JASRBENCH_MLFLOW"] = "0"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _copy_cloned_files(dest: Path, *pathspec: str) -> None:
    """The files a clone would hold under ``pathspec`` (all of them without one): tracked and
    untracked-not-ignored files of this checkout's working tree."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *pathspec],
                           cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO_ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, dest / name)


def copy_repo(dest: Path, extra: tuple[str, ...] = ()) -> None:
    """What a clone holds of the package, the profiles and the DAG (this checkout's working tree), plus ``extra``
    (the report stage also reads results/fidelity)."""
    _copy_cloned_files(dest, "jasrbench", "pipelines", "dvc.yaml", ".dvcignore", "results/model_costs.csv",
                       "results/fidelity", *extra)


def copy_clone(dest: Path, env: dict) -> None:
    """Everything a clone holds, committed to a fresh git repository in ``dest`` as one snapshot
    (``env`` runs git: it names the committer)."""
    _copy_cloned_files(dest)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "snapshot"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)


def mini_300w(w300_root: Path, dest: Path, train_faces: int, test_faces: int, helen_test_faces: int = 0) -> Path:
    """A raw 300W folder of real faces: the first LFPW training and test images (linked, with their .pts), and
    ``helen_test_faces`` HELEN test images (300W's common test set needs both)."""
    for subset, count in (("lfpw/trainset", train_faces), ("lfpw/testset", test_faces),
                          ("helen/testset", helen_test_faces)):
        if not count:
            continue
        (dest / subset).mkdir(parents=True)
        for pts in sorted((w300_root / subset).glob("*.pts"))[:count]:
            image = next(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts")
            for src in (pts, image):
                (dest / subset / src.name).symlink_to(src)
    return dest
