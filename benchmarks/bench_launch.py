"""Wall time of ``jasrbench launch --workers N`` against a sequential ``dvc repro`` of the same DAG.

Two fresh copies of the repository (the package, the profiles, ``dvc.yaml``; DVC without git,
MLflow off) each run the smoke profile restricted to ``--models`` on the shared 300W subset:
one with ``dvc repro``, one with ``jasrbench launch --workers N``. Both use each machine's
default threads (``dvc repro``: torch's default; launch: max(1, cores // N) per stage). Prints
both wall times and, for the launched copy, whether its ``metrics.json`` equals the sequential
one. The numbers mean something only on an otherwise idle machine; the JSON (``--json``, written
atomically) records the CPU count, the load average before and after, and both timings.

Usage::

    .venv/bin/python benchmarks/bench_launch.py [--models bicubic edsr srresnet vdsr jasrnet] [--workers 2]
        [--json results/bench_launch.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jasrbench import config
from jasrbench.io import atomic_write_json
from jasrbench.paths import REPO_ROOT, test_data_root


def _copy_repo(dest: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "pipeline"))  # the tests' copy of a clone's files
    from pipeline_helpers import copy_repo

    copy_repo(dest)


def _params(models: list[str], raw: Path) -> dict:
    params = copy.deepcopy(config.load_profile("smoke", REPO_ROOT))
    params["data"]["datasets"] = {"300w": {**params["data"]["datasets"]["300w"], "raw": str(raw)}}
    params["models"] = {name: params["models"][name] for name in models}
    params["runs"] = {}
    for name in models:
        config.set_model_runs(params, name, {"300w": ["300w/common"]})
    return params


def _timed(cmd: list[str], repo: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(repo), "JASRBENCH_MLFLOW": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["bicubic", "edsr", "srresnet", "vdsr", "jasrnet"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--raw", type=Path, default=None, help="300W root (default: the shared test data's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    raw = (args.raw or test_data_root() / "300W").resolve()
    params = _params(args.models, raw)
    result = {"models": args.models, "workers": args.workers, "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "loadavg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench_launch_") as tmp:
        repos = {}
        for name in ("sequential", "launched"):
            repo = repos[name] = Path(tmp) / name
            _copy_repo(repo)
            config.write_params(params, repo)
            subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "--no-scm", "-q"], cwd=repo, check=True)
        result["dvc_repro_s"] = round(_timed([str(Path(sys.executable).parent / "dvc"), "repro"], repos["sequential"]), 1)
        result["launch_s"] = round(_timed([sys.executable, "-m", "jasrbench", "launch", "--workers",
                                           str(args.workers)], repos["launched"]), 1)
        metrics = [json.loads((repos[n] / "results" / "smoke" / "metrics.json").read_text()) for n in repos]
        result["same_metrics"] = metrics[0] == metrics[1]
    result["loadavg_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
