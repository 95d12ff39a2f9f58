"""MLflow: the server `make mlflow-ui` starts, runs found through its REST API, stopped by its process id.

The server is started with the Makefile's own command line (127.0.0.1, one
worker, no job workers) on a free port and a temporary sqlite store; the
results tree (conftest) trains and evaluates real smoke models — among them
Table 4's BL pair — logging to it over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import socket

import pytest
from report_helpers import group_processes

PROFILE = "smoke"
ABLATIONS = {"jasrnet_bl_sr", "jasrnet_bl_align"}


def test_makefile_starts_the_ui_on_localhost_with_one_worker_and_no_job_workers(mlflow_server):
    command = mlflow_server.command
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in command
    assert re.search(r"--host 127\.0\.0\.1\b", command) and re.search(r"--workers 1\b", command)
    mlflow_server.wait_ready()
    processes = [cmd for _, cmd in group_processes(mlflow_server.pgid)]
    uvicorn = [cmd for cmd in processes if "uvicorn" in cmd]
    assert len(uvicorn) == 1 and "--host 127.0.0.1" in uvicorn[0] and "--workers 1" in uvicorn[0], processes
    assert not [cmd for cmd in processes if "huey" in cmd or "job" in cmd.lower()], processes
    with pytest.raises(OSError):  # not listening on other interfaces
        with socket.create_connection((_other_address(), mlflow_server.port), timeout=1):
            pass


def _other_address() -> str:
    """A non-loopback address of this machine (or a loopback address other than 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
        except OSError:
            address = "127.0.0.2"
    return address if not address.startswith("127.0.0.1") else "127.0.0.2"


def test_table4_ablation_runs_found_through_the_rest_api_then_server_stopped(mlflow_server, results_tree):
    server = mlflow_server
    experiments = {e["name"]: e["experiment_id"]
                   for e in server.post("experiments/search", {"max_results": 1000})["experiments"]}
    assert {f"jasrbench/{PROFILE}/train", f"jasrbench/{PROFILE}/table4"} <= set(experiments), experiments

    found = server.post("runs/search", {"experiment_ids": list(experiments.values()), "max_results": 1000,
                                        "filter": "tags.table_4 = 'yes'"})["runs"]
    runs = [{**r["info"], "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])},
             "metrics": {m["key"]: m["value"] for m in r["data"].get("metrics", [])}} for r in found]
    assert {r["tags"]["model"] for r in runs} == ABLATIONS  # the only models of the tree that log to MLflow
    for run in runs:
        tags = run["tags"]
        assert tags["profile"] == PROFILE and tags["table_4"] == "yes" and "4" in tags["tables"].split(",")
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", tags["git_commit"]), tags["git_commit"]
        assert tags["stage"] in ("train", "evaluate") and run["status"] == "FINISHED"
    for model in ABLATIONS:
        stages = {r["tags"]["stage"]: r for r in runs if r["tags"]["model"] == model}
        assert set(stages) == {"train", "evaluate"}, model
        assert stages["train"]["experiment_id"] == experiments[f"jasrbench/{PROFILE}/train"]
        assert stages["evaluate"]["experiment_id"] == experiments[f"jasrbench/{PROFILE}/table4"]
        assert "loss_total" in stages["train"]["metrics"]
    evaluations = {r["tags"]["model"]: r for r in runs if r["tags"]["stage"] == "evaluate"
                   and r["tags"].get("split") == "300w/common"}
    # The metrics the UI compares side by side are those of the results tree's summaries.
    metrics = json.loads((results_tree.results / "metrics.json").read_text())["models"]
    bl_sr, bl_align = evaluations["jasrnet_bl_sr"]["metrics"], evaluations["jasrnet_bl_align"]["metrics"]
    assert bl_sr["psnr"] == pytest.approx(metrics["jasrnet_bl_sr"]["300w/common"]["psnr"]["mean"])
    assert bl_align["nme"] == pytest.approx(metrics["jasrnet_bl_align"]["300w/common"]["nme"]["mean"])
    assert "nme" not in bl_sr and "psnr" not in bl_align  # each BL model does one task

    # Table 4's experiment holds exactly the evaluations of Table 4's models, filterable by stage.
    table4 = server.post("runs/search", {"experiment_ids": [experiments[f"jasrbench/{PROFILE}/table4"]],
                                         "filter": "tags.stage = 'evaluate'", "max_results": 1000})["runs"]
    assert {t["value"] for r in table4 for t in r["data"]["tags"] if t["key"] == "model"} == ABLATIONS

    # Stop the server by its process id: the whole group (CLI + uvicorn worker) is gone, the port closed.
    pgid = server.pgid
    server.stop()
    assert server.process.returncode is not None
    assert group_processes(pgid) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    with pytest.raises(OSError):
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
