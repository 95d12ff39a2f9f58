"""One MLflow store for every workspace (issue 13): DVC's temporary experiment workspaces log into the
main repository's ``mlflow.db``, and concurrent writers share it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jasrbench import tracking

# One process: a run with params, 50 metric steps and an artifact, as a training stage logs them.
WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from jasrbench import tracking
    name, go = sys.argv[1], Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.01)
    with tracking.start_run("jasrbench/store-test/train", f"run {name}", {"stage": "train", "model": name},
                            {"model": name, "train": {"lr": 0.1}}) as run:
        for step in range(50):
            run.log_metrics({"loss_total": 1.0 / (step + 1), "val_psnr": 20.0 + step / 100}, step=step)
        note = Path(f"note-{name}.txt")
        note.write_text(name)
        run.log_artifact(note)
    print("ok", name)
""")


def test_a_temporary_experiment_workspace_logs_to_the_main_repository(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    temp = repo / ".dvc" / "tmp" / "exps" / "tmpabc123"
    (temp / "sub").mkdir(parents=True)
    assert tracking.store_root(temp) == repo.resolve()
    assert tracking.store_root(temp / "sub") == repo.resolve()
    assert tracking.store_root(repo) == repo.resolve()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(temp)
    assert tracking.tracking_uri() == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_two_processes_log_to_one_new_sqlite_store_at_once(tmp_path):
    """Both start together on a store that does not exist yet: both runs, all their metrics and artifacts land."""
    import mlflow

    repo = tmp_path / "repo"
    workspaces = [repo / ".dvc" / "tmp" / "exps" / name for name in ("tmpone", "tmptwo")]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"JASRBENCH_MLFLOW": "1", "PYTHONPATH": str(Path(tracking.__file__).parents[1])})
    go = tmp_path / "go"
    procs = []
    for ws, name in zip(workspaces, ("a", "b")):
        ws.mkdir(parents=True)
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, name, str(go)], cwd=ws, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    assert (repo / "mlflow.db").is_file() and not any((ws / "mlflow.db").exists() for ws in workspaces)
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["jasrbench/store-test/train"], output_format="list")
    assert sorted(r.data.tags["model"] for r in runs) == ["a", "b"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "loss_total")) == 50
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert artifacts == [f"note-{run.data.tags['model']}.txt"]
        assert run.info.artifact_uri.startswith((repo / "mlruns").resolve().as_uri())
