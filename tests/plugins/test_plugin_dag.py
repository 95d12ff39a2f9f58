"""The example plugin as a first-class row (issue 27 item 2) in a reduced smoke DAG on a fresh copy of the repository.

The copy holds what a clone holds of the package, the profiles and the DAG; its ``params.yaml`` is the smoke
profile with one dataset (40 training and 16 common-subset test faces of the real 300W subset) and two models: Bicubic
(Table 1's reference) and the example plugin ``tinyjoint`` at tiny widths in Tables 1 and 2 and the robustness
track (300W common under ``noise5``), its ``runs``
entries written by ``jasrbench profile runs tinyjoint --on 300w=300w/common --add``. The plugin is installed
by pip into a folder of its own (``plugin_site``), on ``PYTHONPATH`` for the stages; MLflow logs to the copy's
``mlflow.db``. ``dvc repro`` trains and evaluates it; its row is in the generated Tables 1 and 2 with a note
naming its distribution and version, its runs are in MLflow with the same, ``train.json`` records it, and an
edit of its installed source makes exactly its train, evaluate and robustness stages stale (its fingerprint holds
the file).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from plugin_helpers import DISTRIBUTION, MODEL, VERSION, plugin_env
from pipeline_helpers import copy_repo, mini_300w

from jasrbench import profiles

import jasrbench.dag as jdag
import jasrbench.params as jparams
from jasrbench.paths import REPO_ROOT

pytestmark = pytest.mark.slow

TRAIN = f"train@{MODEL}-300w"
EVALUATE = f"evaluate@{MODEL}-300w-300w_common"
ROBUSTNESS = f"robustness@{MODEL}-300w-300w_common-noise5"


def _params(raw: Path) -> dict:
    params = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    params["data"]["datasets"] = {"300w": {"raw": str(raw), "skip_bad": False}}
    # The two lines a user adds to a profile (here with tiny widths: seconds of training).
    params["models"] = {"bicubic": {"tables": [1]},
                        MODEL: {"tables": [1, 2], "overrides": {"n_feats": 8, "n_blocks": 1}}}
    params["runs"] = {section: {} for section in jdag.RUN_SECTIONS}
    # The robustness track takes it like any model: one camera degradation of 300W common.
    params["robustness"] = {"degradations": ["noise5"], "splits": ["300w/common"], "models": ["bicubic", MODEL]}
    params["train"].update({"epochs": 2, "batch_size": 4, "max_faces": 24, "val_faces": 8})
    params["evaluate"].update({"max_faces": 16, "bootstrap_resamples": 200})
    return params


def _mini_300w(w300_root: Path, dest: Path) -> Path:
    """40 LFPW training faces, and 8 LFPW + 8 HELEN test faces (300W common needs both)."""
    return mini_300w(w300_root, dest, 40, 8, helen_test_faces=8)


def _run(repo: Path, env: dict, *cmd: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dag(tmp_path_factory, w300_root, plugin_site):
    base = tmp_path_factory.mktemp("plugin_dag")
    repo = base / "repo"
    copy_repo(repo, ("results/fidelity",))  # what the report stage reads besides the profile's results
    profiles.write_params(_params(_mini_300w(w300_root, base / "raw300w")), repo)
    env = plugin_env(plugin_site.site)
    env["PYTHONPATH"] = env["PYTHONPATH"].replace(str(REPO_ROOT), str(repo), 1)  # the copy's code
    env.pop("MLFLOW_TRACKING_URI", None)  # the copy's own mlflow.db
    env.pop("JASRBENCH_MLFLOW", None)
    dvc = str(Path(sys.executable).parent / "dvc")
    start = time.monotonic()
    for model in ("bicubic", MODEL):
        added = _run(repo, env, sys.executable, "-m", "jasrbench", "profile", "runs", model, "--on",
                     "300w=300w/common", "--add")
        assert added.returncode == 0, added.stdout + added.stderr
    init = _run(repo, env, dvc, "init", "--no-scm", "-q")
    assert init.returncode == 0, init.stderr
    repro = _run(repo, env, dvc, "repro")
    assert repro.returncode == 0, (repro.stdout[-4000:], repro.stderr[-4000:])
    seconds = time.monotonic() - start
    print(f"\nreduced DAG with the plugin ({MODEL}, bicubic): {seconds:.0f} s")
    return SimpleNamespace(repo=repo, env=env, dvc=dvc, log=repro.stdout, site=plugin_site,
                           params=jparams.load_yaml(repo / "params.yaml"))


def test_runs_entries_name_the_plugins_own_files(dag):
    entry = dag.params["runs"]["train"][f"{MODEL}-300w"]
    # Installed into a folder outside the repository: absolute paths, the model's file first.
    assert entry["code"] == str(dag.site.model_file.resolve())
    assert entry["code2"] == str((dag.site.site / "jasr_example" / "__init__.py").resolve())
    for stage in (TRAIN, EVALUATE, ROBUSTNESS):
        assert f"Running stage '{stage}'" in dag.log, stage


def test_train_json_records_the_plugin_distribution(dag):
    train = json.loads((dag.repo / "results" / "smoke" / "train" / f"{MODEL}-300w" / "train.json").read_text())
    assert train["plugin"] == {"distribution": DISTRIBUTION, "version": VERSION,
                               "entry_point": f"{MODEL} = jasr_example.model:TinyJoint"}
    assert train["arch"] == MODEL


@pytest.mark.parametrize("table, metrics", [("table1", {"psnr", "ssim"}), ("table2", {"nme"})])
def test_its_row_is_in_tables_1_and_2_with_its_package(dag, table, metrics):
    out = dag.repo / "results" / "smoke" / "tables"
    cells = pd.read_csv(out / f"{table}.csv")
    row = cells[cells["row"] == MODEL]
    assert len(row), sorted(set(cells["row"]))
    assert set(row["model"]) == {MODEL}
    filled = row[row["ours"].notna()]
    assert metrics <= set(filled["metric"]), row[["metric", "ours", "note"]]
    assert all(f"{DISTRIBUTION} {VERSION}" in note and note.startswith("not in the paper")
               for note in row["paper_note"]), set(row["paper_note"])
    markdown = (out / f"{table}.md").read_text()
    assert f"| {MODEL} " in markdown and f"{DISTRIBUTION} {VERSION}" in markdown
    assert MODEL in (out / f"{table}.tex").read_text()


def test_it_is_in_no_table_its_profile_entry_does_not_list(dag):
    cells = pd.read_csv(dag.repo / "results" / "smoke" / "tables" / "table3.csv")
    assert MODEL not in set(cells["row"])


def test_its_runs_are_in_mlflow_with_its_package(dag):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{dag.repo / 'mlflow.db'}")
    for experiment in ("jasrbench/smoke/train", "jasrbench/smoke/table1", "jasrbench/smoke/table2"):
        found = client.get_experiment_by_name(experiment)
        assert found is not None, experiment
        runs = client.search_runs([found.experiment_id], filter_string=f"tags.model = '{MODEL}'")
        assert len(runs) == 1, (experiment, len(runs))
        tags = runs[0].data.tags
        assert (tags.get("plugin"), tags.get("plugin_version")) == (DISTRIBUTION, VERSION), tags
        assert runs[0].info.status == "FINISHED"
        if experiment.endswith("table1"):
            assert tags["mlflow.runName"] == f"{MODEL}: {MODEL} on 300w/common"
            assert {"psnr", "ssim"} <= set(runs[0].data.metrics)


def test_editing_the_plugin_source_makes_only_its_stages_stale(dag):
    status = _run(dag.repo, dag.env, dag.dvc, "status")
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    model_file = dag.site.model_file
    original = model_file.read_text()
    try:
        model_file.write_text(original + "\n# an edit of the plugin's own source\n")
        status = _run(dag.repo, dag.env, dag.dvc, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert set(json.loads(status.stdout)) == {TRAIN, EVALUATE, ROBUSTNESS}, status.stdout
        # The run's fingerprint holds the file too: an interrupted run of other code is never resumed.
        probe = _run(dag.repo, dag.env, sys.executable, "-c",
                     "import json; from jasrbench import deps, fingerprint; "
                     f"print(json.dumps(deps.stage_code(fingerprint.TRAIN_ENTRY, {MODEL!r})))")
        assert probe.returncode == 0, probe.stderr
        assert str(model_file.resolve()) in json.loads(probe.stdout)
    finally:
        model_file.write_text(original)
    status = _run(dag.repo, dag.env, dag.dvc, "status")
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
