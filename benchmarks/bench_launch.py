"""Wall time of ``jasrbench launch --workers N`` against a sequential ``dvc repro`` of the same DAG.

Two fresh copies of the repository (MLflow off) each run a smoke DAG: one with ``dvc repro``,
one with ``jasrbench launch --workers N``. By default the DAG is the smoke profile restricted to
``--models`` on the shared 300W subset (the package, the profiles and ``dvc.yaml`` copied; DVC
without git). ``--whole`` runs the whole smoke DAG instead: every model, 300W and the LFW stand-in,
in copies of everything a clone holds (a git repository each, ``../shared/datasets`` beside them
pointing at the test data). Both use each machine's default threads (``dvc repro``: torch's default;
launch: max(1, cores // N) per stage). Records both wall times; whether the launched
``metrics.json`` equals the sequential one bit for bit, and whether it passes the regression gate
(``jasrbench check``) against it within the smoke tolerances of ``results/smoke/expected.json``;
and whether ``dvc status`` is clean after launch. The numbers mean something only on an otherwise
idle machine; the JSON (``--json``, written atomically) records the CPU count and the load average
before and after.

Usage::

    .venv/bin/python benchmarks/bench_launch.py [--models bicubic edsr srresnet vdsr jasrnet | --whole]
        [--workers 2] [--json results/bench_launch.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jasrbench import profiles

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.files import atomic_write_json
from jasrbench.paths import REPO_ROOT, test_data_root


def _helpers():
    """The tests' copies of a clone's files (tests/pipeline/pipeline_helpers.py)."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "pipeline"))
    import pipeline_helpers

    return pipeline_helpers


def _params(models: list[str], raw: Path) -> dict:
    params = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    params["data"]["datasets"] = {"300w": {**params["data"]["datasets"]["300w"], "raw": str(raw)}}
    params["models"] = {name: params["models"][name] for name in models}
    params.pop("robustness", None)  # the reduced DAG: training and evaluation only
    params["runs"] = {}
    for name in models:
        jdag.set_model_runs(params, name, {"300w": ["300w/common"]})
    return params


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo), "JASRBENCH_MLFLOW": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _timed(cmd: list[str], repo: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=repo, env=_env(repo), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def _whole_copy(dest: Path) -> None:
    """Everything a clone holds, as a git repository, with the smoke profile selected."""
    git = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@localhost"}
    _helpers().copy_clone(dest, {**os.environ, **git})
    subprocess.run([sys.executable, "-m", "jasrbench", "profile", "use", "smoke"], cwd=dest, env=_env(dest),
                   check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["bicubic", "edsr", "srresnet", "vdsr", "jasrnet"])
    parser.add_argument("--whole", action="store_true", help="the whole smoke DAG (every model, 300W and LFW)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--raw", type=Path, default=None, help="300W root (default: the shared test data's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="make the two copies here (kept) instead of in a temporary folder")
    args = parser.parse_args()
    dvc = str(Path(sys.executable).parent / "dvc")
    models = sorted(jparams.load_profile("smoke", REPO_ROOT)["models"]) if args.whole else args.models
    result = {"dag": "whole smoke DAG" if args.whole else "smoke, 300W only", "models": models,
              "workers": args.workers, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "loadavg_before": os.getloadavg()}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
    with (contextlib.nullcontext(str(args.keep.resolve())) if args.keep
          else tempfile.TemporaryDirectory(prefix="bench_launch_")) as tmp:
        repos = {}
        if args.whole:
            (Path(tmp) / "shared").mkdir()
            (Path(tmp) / "shared" / "datasets").symlink_to(test_data_root().resolve(), target_is_directory=True)
        for name in ("sequential", "launched"):
            repo = repos[name] = Path(tmp) / name
            if args.whole:
                _whole_copy(repo)
                continue
            _helpers().copy_repo(repo)
            profiles.write_params(_params(models, (args.raw or test_data_root() / "300W").resolve()), repo)
            subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
        result["dvc_repro_s"] = round(_timed([dvc, "repro"], repos["sequential"]), 1)
        result["launch_s"] = round(_timed([sys.executable, "-m", "jasrbench", "launch", "--workers",
                                           str(args.workers)], repos["launched"]), 1)
        paths = {n: repos[n] / "results" / "smoke" / "metrics.json" for n in repos}
        result["same_metrics"] = paths["sequential"].read_bytes() == paths["launched"].read_bytes()
        # The regression gate both ways (each run as the other's expectation), at the smoke tolerances:
        # neither is worse than the other beyond them.
        tolerances = json.loads((REPO_ROOT / "results" / "smoke" / "expected.json").read_text()).get("tolerances", {})
        gates = []
        for exp, act in (("sequential", "launched"), ("launched", "sequential")):
            expected = Path(tmp) / f"expected_{exp}.json"
            expected.write_text(json.dumps({**json.loads(paths[exp].read_text()), "tolerances": tolerances}))
            gates.append(subprocess.run([sys.executable, "-m", "jasrbench", "check", "--expected", str(expected),
                                         "--actual", str(paths[act])], cwd=repos[act], env=_env(repos[act]),
                                        capture_output=True, text=True))
        result["within_tolerances"] = all(g.returncode == 0 for g in gates)
        result["gate_output"] = "\n".join(g.stdout[-1500:] for g in gates)
        status = subprocess.run([dvc, "status"], cwd=repos["launched"], env=_env(repos["launched"]),
                                capture_output=True, text=True)
        result["status_clean_after_launch"] = "Data and pipelines are up to date." in status.stdout
    result["loadavg_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
