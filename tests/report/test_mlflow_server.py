"""MLflow: the server `make mlflow-ui` starts, runs found through its REST API, stopped by its process id.

The server is started with the Makefile's own command line (127.0.0.1, one
worker, no job workers) on a free port and a temporary sqlite store; the
results tree (conftest) trains and evaluates real smoke models — Table 4's
rows BL (its SR-only and alignment-only halves) and JASRNet — logging to it
over HTTP. What a reader of the UI relies on is checked here through the REST
API (experiment kind, switches, datasets, lineage, the table view);
``test_mlflow_browser.py`` checks the same in the rendered page. The stop by
process id is checked on a server of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from pathlib import Path

import pytest
from report_helpers import (LOGGED, PROFILE, ROWS, SWITCHES, experiment_ids, group_processes, search_runs,
                            start_mlflow_server)

from jasrbench import tracking

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.data.split import load_split

ABLATIONS = set(LOGGED)  # the tree's models that log to MLflow


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


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_runs(tree) -> dict[str, dict]:
    """The tree's train and 300W-common evaluate DAG items of each logged model."""
    dag = jdag.stages(tree.params)
    items = {}
    for model in ABLATIONS:
        train = next(i for i in dag["train"].values() if i["model"] == model)
        evaluate = next(i for i in dag["evaluate"].values() if i["model"] == model and i["split"] == "300w/common")
        items[model] = {"checkpoint": tree.root / evaluate["checkpoint"], "train_split": Path(train["train_split"])}
    return items


def test_experiments_open_as_model_training_with_a_table_view_of_psnr_nme_and_the_switches(mlflow_server,
                                                                                           results_tree):
    server = mlflow_server
    experiments = experiment_ids(server)
    ours = {n: i for n, i in experiments.items() if n.startswith(f"jasrbench/{PROFILE}/")}
    assert {f"jasrbench/{PROFILE}/train", f"jasrbench/{PROFILE}/table4"} <= set(ours), experiments
    for name, eid in ours.items():
        tags = {t["key"]: t["value"] for t in server.get(f"experiments/get?experiment_id={eid}")["experiment"]["tags"]}
        assert tags["mlflow.experimentKind"] == "custom_model_development", name  # not a GenAI experiment
        assert "Params `arch.*`" in tags["mlflow.note.content"], name

    table4 = ours[f"jasrbench/{PROFILE}/table4"]
    tags = {t["key"]: t["value"] for t in server.get(f"experiments/get?experiment_id={table4}")["experiment"]["tags"]}
    # The description opens the table view, in the UI's model-training layout.
    link = f"#/experiments/{table4}/runs?viewStateShareKey=jasrbench&workflowType=machine_learning"
    assert f"**[Table view]({link})**" in tags["mlflow.note.content"]
    view = json.loads(tags["mlflow.sharedViewState.jasrbench"])
    # Table 4's metrics in its order, then exactly the switches that differ between BL's halves and JASRNet.
    assert view["selectedColumns"] == ["metrics.`psnr`", "metrics.`nme`", "params.`arch.tasks`",
                                       "params.`arch.fusion`", "params.`arch.long_skip`"]
    order = view["columnOrder"]
    assert order.index("attributes.`Run Name`") < order.index("metrics.`psnr`") < order.index("metrics.`nme`")
    assert view["orderByKey"] == "tags.`mlflow.runName`" and view["orderByAsc"] is True


def test_runs_carry_switches_datasets_and_lineage(mlflow_server, results_tree):
    server = mlflow_server
    experiments = experiment_ids(server)
    train_runs = {r["tags"]["model"]: r for r in search_runs(server, [experiments[f"jasrbench/{PROFILE}/train"]])}
    table4 = {r["tags"]["model"]: r for r in search_runs(server, [experiments[f"jasrbench/{PROFILE}/table4"]])}
    assert set(train_runs) == set(table4) == ABLATIONS
    common = results_tree.prepared / "300w" / "common.npz"
    common_faces, common_sha = len(load_split(common)), sha256(common)
    items = tree_runs(results_tree)
    (train_split,) = {item["train_split"] for item in items.values()}  # all trained on 300W's training split
    split, train_sha = load_split(train_split), sha256(train_split)
    for model, item in items.items():
        train, evaluation = train_runs[model], table4[model]
        # Switches: the same keys and values on both runs, the registry's defaults under the profile's overrides.
        arch = {k: v for k, v in train["params"].items() if k.startswith("arch.")}
        entry = jparams.model_entry(results_tree.params, model)
        assert arch == tracking.arch_params(entry["arch"], {**entry["overrides"], "num_points": 68})
        assert {k: arch[k] for k in SWITCHES[model]} == SWITCHES[model], model
        assert {k: v for k, v in evaluation["params"].items() if k.startswith("arch.")} == arch

        # Datasets: the prepared split with its content digest, protocol and face count.
        (tin,) = train["datasets"]
        assert tin["dataset"]["name"] == "300w/train" and tin["dataset"]["digest"] == train_sha[:16]
        profile = json.loads(tin["dataset"]["profile"])
        assert profile == {"faces": len(split), "protocol": split.metadata.get("protocol", "clean"), "points": 68,
                           "sha256": train_sha}
        assert {t["key"]: t["value"] for t in tin["tags"]}["mlflow.data.context"] == "training"
        (ein,) = evaluation["datasets"]
        assert ein["dataset"]["name"] == "300w/common" and ein["dataset"]["digest"] == common_sha[:16]
        assert json.loads(ein["dataset"]["profile"])["faces"] == common_faces
        ein_tags = {t["key"]: t["value"] for t in ein["tags"]}
        assert ein_tags["mlflow.data.context"] == "evaluation"
        assert int(ein_tags["faces_evaluated"]) == int(evaluation["params"]["faces"]) <= common_faces

        # Lineage: the evaluation names the training run that kept the very checkpoint it scored.
        checkpoint = sha256(item["checkpoint"])
        assert train["tags"]["checkpoint_sha256"] == evaluation["tags"]["checkpoint_sha256"] == checkpoint
        assert evaluation["tags"]["training_run_id"] == train["run_id"]
        # The row of Table 4 the run fills leads its name.
        assert evaluation["tags"]["paper_row"] == ROWS[model]
        assert evaluation["run_name"] == f"{ROWS[model]}: {model} on 300w/common"

    # JASRNet on LFW fills Table 3, not Table 4 (whose columns read 300W only).
    table3 = search_runs(server, [experiments[f"jasrbench/{PROFILE}/table3"]])
    assert {(r["tags"]["model"], r["tags"]["split"]) for r in table3} == {("jasrnet", "lfw/test")}


def test_table4_ablation_runs_found_through_the_rest_api(mlflow_server, results_tree):
    server = mlflow_server
    experiments = experiment_ids(server)
    assert {f"jasrbench/{PROFILE}/train", f"jasrbench/{PROFILE}/table4"} <= set(experiments), experiments

    runs = search_runs(server, list(experiments.values()), "tags.table_4 = 'yes'")
    assert {r["tags"]["model"] for r in runs} == ABLATIONS  # the only models of the tree that log to MLflow
    for run in runs:
        tags = run["tags"]
        assert tags["profile"] == PROFILE and tags["table_4"] == "yes" and "4" in tags["tables"].split(",")
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", tags["git_commit"]), tags["git_commit"]
        assert tags["stage"] in ("train", "evaluate") and run["status"] == "FINISHED"
    for model in ABLATIONS:
        mine = [r for r in runs if r["tags"]["model"] == model]
        assert [r["experiment_id"] for r in mine if r["tags"]["stage"] == "train"] == [
            experiments[f"jasrbench/{PROFILE}/train"]]
        assert experiments[f"jasrbench/{PROFILE}/table4"] in {r["experiment_id"] for r in mine
                                                               if r["tags"]["stage"] == "evaluate"}
        assert "loss_total" in next(r for r in mine if r["tags"]["stage"] == "train")["metrics"]
    table4 = search_runs(server, [experiments[f"jasrbench/{PROFILE}/table4"]], "tags.stage = 'evaluate'")
    evaluations = {r["tags"]["model"]: r for r in table4}
    # Table 4's experiment holds exactly the evaluations of Table 4's models, one each (300W common).
    assert len(table4) == len(evaluations) == len(ABLATIONS) and set(evaluations) == ABLATIONS
    # The metrics the UI compares side by side are those of the results tree's summaries.
    metrics = json.loads((results_tree.results / "metrics.json").read_text())["models"]
    bl_sr, bl_align = evaluations["jasrnet_bl_sr"]["metrics"], evaluations["jasrnet_bl_align"]["metrics"]
    assert bl_sr["psnr"] == pytest.approx(metrics["jasrnet_bl_sr"]["300w/common"]["psnr"]["mean"])
    assert bl_align["nme"] == pytest.approx(metrics["jasrnet_bl_align"]["300w/common"]["nme"]["mean"])
    assert "nme" not in bl_sr and "psnr" not in bl_align  # each BL model does one task
    assert {"psnr", "nme"} <= set(evaluations["jasrnet"]["metrics"])


def test_server_stopped_by_its_process_id(tmp_path):
    """A server of its own: the session's serves other modules' tests, which may run after this one
    (pytest-xdist hands out whole files in any order)."""
    server = start_mlflow_server(tmp_path)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
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
