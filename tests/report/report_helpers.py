"""Helpers of the report tests: the MLflow server `make mlflow-ui` starts, and a small real results tree.

:func:`build_results_tree` trains three tiny models of the smoke profile on the
real 300W subset (JASRNet and Table 4's BL pair, logging to the MLflow
server), evaluates them (and bicubic on 300W common, on the unavailable
300W challenge and on an LFW-layout split prepared from ``verify/`` with a few
pairs per fold), collects, measures two models' costs and runs ``jasrbench
report`` on the result — once per session. Only JASRNet and the BL pair log
to MLflow: every logged run costs HTTP round trips, and the MLflow tests need
only two of Table 4's rows.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from jasrbench import profiles

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.paths import REPO_ROOT

PROFILE = "smoke"
# The runs the MLflow tests look for: Table 4's rows BL (its SR-only and alignment-only halves) and JASRNet.
LOGGED = ("jasrnet", "jasrnet_bl_sr", "jasrnet_bl_align")
ROWS = {"jasrnet_bl_sr": "BL", "jasrnet_bl_align": "BL", "jasrnet": "JASRNet"}  # their rows of Table 4
# What tells them apart in MLflow (the smoke profile gives all three the same widths).
SWITCHES = {"jasrnet_bl_sr": {"arch.tasks": "sr", "arch.fusion": "False", "arch.long_skip": "False"},
            "jasrnet_bl_align": {"arch.tasks": "align", "arch.fusion": "False", "arch.long_skip": "False"},
            "jasrnet": {"arch.tasks": "both", "arch.fusion": "True", "arch.long_skip": "True"}}
LFW_PAIRS_PER_FOLD = 1  # 20 pairs: verification (dlib) dominates the tree's evaluation time


# --- the MLflow server ------------------------------------------------------------------------------
def makefile_mlflow_command(venv: Path) -> str:
    """The shell command `make mlflow-ui` runs (from `make -n`, with this interpreter's venv)."""
    out = subprocess.run(["make", "-n", "-s", "-C", str(REPO_ROOT), "mlflow-ui", f"VENV={venv}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.search(r"\bmlflow (ui|server)\b", ln))
    command = []
    for ln in lines[start:]:
        command.append(ln.rstrip("\\").strip())
        if not ln.rstrip().endswith("\\"):
            break
    return " ".join(command)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_processes(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes in process group ``pgid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            state, pgrp = fields[0], int(fields[2])
            if pgrp == pgid and state != "Z":
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(stat.parent.name), cmd.strip()))
    return found


def start_mlflow_server(root: Path) -> "MlflowServer":
    """``make mlflow-ui``'s command on a free port with a sqlite store in ``root`` (started, not yet awaited)."""
    venv = Path(sys.executable).parent.parent
    command = makefile_mlflow_command(venv)
    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", MLFLOW_PORT=str(port))
    log = root / "server.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(["bash", "-c", command], cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return MlflowServer(f"http://127.0.0.1:{port}", port, command, process, log, root / "mlflow.db")


@dataclass
class MlflowServer:
    url: str
    port: int
    command: str
    process: subprocess.Popen
    log: Path
    store: Path
    _ready: bool = field(default=False)

    @property
    def pgid(self) -> int:
        return self.process.pid  # started in a new session: the leader's pid is the group id

    def wait_ready(self, timeout: float = 120) -> None:
        if self._ready:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        self._ready = True
                        return
            time.sleep(0.25)
        raise TimeoutError(f"mlflow server not up after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def post(self, endpoint: str, payload: dict) -> dict:
        request = urllib.request.Request(f"{self.url}/api/2.0/mlflow/{endpoint}", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def get(self, endpoint: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/2.0/mlflow/{endpoint}", timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the whole process group (the CLI and its uvicorn worker), then wait for both."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        deadline = time.monotonic() + timeout
        while group_processes(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.1)


# --- MLflow's REST API -------------------------------------------------------------------------------
def experiment_ids(server) -> dict[str, str]:
    return {e["name"]: e["experiment_id"] for e in server.post("experiments/search", {"max_results": 1000})["experiments"]}


def search_runs(server, experiment_ids: list[str], filter_string: str = "") -> list[dict]:
    """Runs as flat dicts: info, and tags, params, metrics as mappings, dataset inputs as a list."""
    found = server.post("runs/search", {"experiment_ids": experiment_ids, "max_results": 1000,
                                        "filter": filter_string})["runs"]
    return [{**r["info"], "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])},
             "params": {p["key"]: p["value"] for p in r["data"].get("params", [])},
             "metrics": {m["key"]: m["value"] for m in r["data"].get("metrics", [])},
             "datasets": r.get("inputs", {}).get("dataset_inputs", [])} for r in found]


# --- the results tree --------------------------------------------------------------------------------
def small_lfw_layout(verify_root: Path, root: Path, per_fold: int) -> Path:
    """An LFW-layout copy (symlinks) of ``verify/`` keeping ``per_fold`` same and different pairs per fold."""
    from jasrbench.data.lfw import image_path, read_pairs

    pairs = read_pairs(verify_root / "pairs.txt")
    folds = sorted({p.fold for p in pairs})
    lines = [f"{len(folds)}\t{per_fold}"]
    for fold in folds:
        same = [p for p in pairs if p.fold == fold and p.same][:per_fold]
        diff = [p for p in pairs if p.fold == fold and not p.same][:per_fold]
        lines += [f"{p.name1}\t{p.index1}\t{p.index2}" for p in same]
        lines += [f"{p.name1}\t{p.index1}\t{p.name2}\t{p.index2}" for p in diff]
        for p in same + diff:
            for name, index in ((p.name1, p.index1), (p.name2, p.index2)):
                dst = image_path(root, name, index)
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.symlink_to(image_path(verify_root, name, index).resolve())
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def tree_params(w300_root: Path, lfw_root: Path, prepared: Path) -> dict:
    """The smoke profile, trimmed to seconds and to the trained models."""
    params = copy.deepcopy(jparams.load_profile(PROFILE, REPO_ROOT))
    params["data"]["prepared"] = str(prepared)
    params["data"]["datasets"]["300w"]["raw"] = str(w300_root)
    params["data"]["datasets"]["lfw"]["raw"] = str(lfw_root)
    params["train"].update({"epochs": 2, "batch_size": 4, "max_faces": 8, "val_faces": 4})
    params["evaluate"].update({"max_faces": 16, "bootstrap_resamples": 200, "pairs_per_fold": None})
    keep = {"bicubic": ["300w/common", "300w/challenge", "lfw/test"], "jasrnet": ["300w/common", "lfw/test"],
            "jasrnet_bl_sr": ["300w/common"], "jasrnet_bl_align": ["300w/common"]}
    params["models"], params["runs"] = {m: params["models"][m] for m in keep}, {}
    params.pop("robustness", None)  # a reduced profile: the robustness track is test_smoke_dag's
    for model, splits in keep.items():
        jdag.set_model_runs(params, model, {"300w": splits})
    jdag.check(params, "tests/report tree params")
    return params


def measure_costs(out: Path) -> Path:
    """``benchmarks/bench_model_costs.py`` for two cheap models (one step each)."""
    spec = importlib.util.spec_from_file_location("bench_model_costs", REPO_ROOT / "benchmarks" / "bench_model_costs.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--models", "bicubic", "edsr", "--steps", "1", "--warmup", "0", "--batch", "1",
                       "--out", str(out)]) == 0
    return out


@dataclass
class ResultsTree:
    root: Path
    results: Path  # results/smoke
    models: Path  # models/smoke
    prepared: Path
    params: dict
    costs: Path
    seconds: dict[str, float]

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    @property
    def figures(self) -> Path:
        return self.results / "figures"


def build_results_tree(mlflow_server: MlflowServer, prepared_300w_out: Path, w300_root: Path, verify_root: Path,
                       root: Path) -> ResultsTree:
    """Train, evaluate, collect, measure costs and report into ``root`` (logging to ``mlflow_server``)."""
    from jasrbench.cli import main
    from jasrbench.collect import collect
    from jasrbench.data.prepare import prepare
    from jasrbench.evaluate import evaluate
    from jasrbench.files import atomic_write_json
    from jasrbench.train import train

    times: dict[str, float] = {}
    prepared = root / "prepared"
    prepared.mkdir()
    (prepared / "300w").symlink_to(prepared_300w_out, target_is_directory=True)
    t = time.perf_counter()
    lfw_raw = small_lfw_layout(verify_root, root / "raw" / "lfw", LFW_PAIRS_PER_FOLD)
    prepare("lfw", lfw_raw, prepared / "lfw")
    times["prepare lfw"] = time.perf_counter() - t
    params = tree_params(w300_root, lfw_raw, prepared)
    profiles.write_params(params, root)
    dag = jdag.stages(params)

    mlflow_server.wait_ready()
    # Paths are absolute; runs are tagged with the commit of the current directory's checkout.
    with _env(MLFLOW_TRACKING_URI=mlflow_server.url):
        t = time.perf_counter()
        for item in dag["train"].values():
            with _env(JASRBENCH_MLFLOW="1" if item["model"] in LOGGED else "0"):
                train(item["model"], item["dataset"], params, root / item["out"], root / item["results"])
        times["train"] = time.perf_counter() - t
        t = time.perf_counter()
        for item in dag["evaluate"].values():
            with _env(JASRBENCH_MLFLOW="1" if item["model"] in LOGGED else "0"):
                evaluate(str(root / item["checkpoint"]), item["split"], root / item["out"], params)
        with _env(JASRBENCH_MLFLOW="0"):
            for item in dag["evaluate_untrained"].values():
                evaluate(item["model"], item["split"], root / item["out"], params, hr_reference=True)
        times["evaluate"] = time.perf_counter() - t
        from jasrbench.report.mlflow_tables import publish

        with _env(JASRBENCH_MLFLOW="1"):
            publish(PROFILE)  # as the collect stage does: runs named by paper row, table notes and views
    atomic_write_json(root / "results" / PROFILE / "metrics.json", collect(params, root))
    t = time.perf_counter()
    costs = measure_costs(root / "results" / "model_costs.csv")
    times["costs"] = time.perf_counter() - t
    results = root / "results" / PROFILE
    t = time.perf_counter()
    assert main(["report", "--results", str(results), "--out", str(results), "--models", str(root / "models" / PROFILE),
                 "--prepared", str(prepared), "--costs", str(costs), "--params", str(root / "params.yaml")]) == 0
    times["report"] = time.perf_counter() - t
    print("\nresults tree: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    return ResultsTree(root, results, root / "models" / PROFILE, prepared, params, costs, times)


@contextlib.contextmanager
def _env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
