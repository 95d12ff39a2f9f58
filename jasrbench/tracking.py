"""MLflow logging for every train and evaluate run (DESIGN §6).

The store is the local sqlite file ``mlflow.db`` in the repository root (the
current directory, where DVC runs stages) unless
``MLFLOW_TRACKING_URI`` says otherwise (e.g. a server started by
``make mlflow-ui``). ``JASRBENCH_MLFLOW=0`` turns logging off (the run still
writes its DVC metrics and files).

Runs carry tags that line them up in the UI: ``model``, ``arch``, ``dataset``,
``split``, ``profile``, ``stage`` (train/evaluate), ``git_commit``, ``tables``
(the paper tables the model belongs to, e.g. ``1,2,4``) and one ``table_N=yes``
tag per table, so ``tags.table_4 = 'yes'`` filters Table 4's ablations.
Evaluation runs also go into one experiment per table
(``jasrbench/<profile>/table<N>``) so each table's runs sit side by side.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


log = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get("JASRBENCH_MLFLOW", "1") not in ("0", "false", "no")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def git_commit(root: Path | None = None) -> str:
    root = Path.cwd() if root is None else root
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        if commit != "unknown" and dirty.returncode == 0 and dirty.stdout.strip():
            commit += "-dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def table_tags(tables: list[int] | None) -> dict[str, str]:
    tables = sorted(set(tables or []))
    tags = {"tables": ",".join(str(t) for t in tables)}
    tags.update({f"table_{t}": "yes" for t in tables})
    return tags


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = str(v)[:6000]
    return out


class Run:
    """A thin handle over an active MLflow run (a no-op when logging is off)."""

    def __init__(self, mlflow_module=None):
        self._mlflow = mlflow_module

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags(dict(tags))

    @property
    def run_id(self) -> str | None:
        if self._mlflow is None:
            return None
        run = self._mlflow.active_run()
        return run.info.run_id if run else None


@contextlib.contextmanager
def start_run(experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> Iterator[Run]:
    """Open a run in ``experiment`` with ``tags`` and flattened ``params``; yields a :class:`Run`."""
    if not enabled():
        yield Run(None)
        return
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags={"git_commit": git_commit(), **dict(tags)}):
        flat = _flatten(params)
        items = list(flat.items())
        for i in range(0, len(items), 90):  # MLflow caps params per batch call at 100
            mlflow.log_params(dict(items[i : i + 90]))
        yield Run(mlflow)
