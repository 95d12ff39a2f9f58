"""MLflow logging for every train and evaluate run (DESIGN §6).

One store: ``mlflow.db`` (sqlite) and ``mlruns/`` in the main repository's root, unless
``MLFLOW_TRACKING_URI`` says otherwise; stages run in DVC's temporary experiment workspaces log
there too (:func:`store_root`), and concurrent writers serialize store and experiment creation
on ``mlflow.db.lock``. ``JASRBENCH_MLFLOW=0`` turns logging off. Training runs go to
``jasrbench/<profile>/train``, evaluation runs to one experiment per paper table whose columns
read the split (else ``jasrbench/<profile>/evaluate``). So that ablations compare in the UI,
every run carries the same tags (model, dataset, split, tables, ``table_N=yes``, git commit),
the effective build keywords as ``arch.<keyword>`` params, the prepared split as an MLflow
dataset with its SHA-256, and lineage by checkpoint hash (``checkpoint_sha256``,
``training_run_id``); table experiments name runs by paper row and link a :func:`table_view`.
Experiments are tagged as model training, and links carry ``workflowType=machine_learning``,
because MLflow 3's UI otherwise opens them as GenAI.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .files import file_sha256


log = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get("JASRBENCH_MLFLOW", "1") not in ("0", "false", "no")


# DVC's temporary experiment workspaces: <repo>/.dvc/tmp/exps/<name>/ (dvc exp run --queue / --temp).
_DVC_TEMP_WORKSPACES = (".dvc", "tmp", "exps")


def store_root(cwd: str | Path | None = None) -> Path:
    """The folder of the default store: the repository whose DVC runs this stage (the current
    directory, or the main repository when that is one of DVC's temporary experiment workspaces)."""
    path = Path.cwd() if cwd is None else Path(cwd)
    parts = path.resolve().parts
    n = len(_DVC_TEMP_WORKSPACES)
    for i in range(1, len(parts) - n):
        if parts[i : i + n] == _DVC_TEMP_WORKSPACES:
            return Path(*parts[:i])
    return path.resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for a server or another store)."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _store_lock() -> Iterator[None]:
    """Serializes creating a sqlite store and its experiments across processes (a no-op for a
    server): two first writers would otherwise both run MLflow's schema migration."""
    db = _sqlite_file(tracking_uri())
    if db is None:
        yield
        return
    from filelock import FileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db}.lock", timeout=600):
        yield


# What every `dvc repro` rewrites: a difference there is the run's own output, not changed source.
NOT_SOURCE = ("dvc.lock", "results")


def git_commit(root: Path | None = None) -> str:
    """HEAD's commit, with ``-dirty`` only when a tracked file other than :data:`NOT_SOURCE` differs."""
    root = Path.cwd() if root is None else root
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        excludes = [f":(top,exclude){path}" for path in NOT_SOURCE]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", *excludes],
                               cwd=root, capture_output=True, text=True, timeout=10)
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


def plugin_record(arch: str | None) -> dict[str, str] | None:
    """A plugin model's distribution, version and entry point (issue 27; ``train.json``); None when built in."""
    from .models import plugin_of

    plugin = plugin_of(arch) if arch else None
    return plugin.as_dict() if plugin is not None else None


def plugin_tags(arch: str | None) -> dict[str, str]:
    """The tags naming a plugin model's package on its train and evaluate runs (none for a built-in model)."""
    record = plugin_record(arch)
    return {} if record is None else {"plugin": record["distribution"], "plugin_version": record["version"],
                                      "plugin_entry_point": record["entry_point"]}


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

    def end(self, status: str) -> None:
        """End the run now with ``status`` (``KILLED`` for an interrupted run; the context's exit is then a no-op)."""
        if self.active:
            self._mlflow.end_run(status=status)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags(dict(tags))

    def log_split(self, path: str | Path, metadata: Mapping[str, Any], faces: int, context: str,
                  **tags: Any) -> None:
        """Log the prepared split at ``path`` as this run's ``context`` dataset (see :func:`split_dataset`)."""
        if self._mlflow is not None:
            self._mlflow.log_input(split_dataset(path, metadata, faces), context=context,
                                   tags={k: str(v) for k, v in tags.items()})

    def tag_checkpoint(self, path: str | Path) -> None:
        """Tag the SHA-256 of the checkpoint this run kept (evaluation runs find their training run by it)."""
        if self._mlflow is not None:
            self._mlflow.set_tags(checkpoint_tags(path))

    @property
    def experiment_id(self) -> str | None:
        if self._mlflow is None:
            return None
        run = self._mlflow.active_run()
        return run.info.experiment_id if run else None

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
    with _store_lock():
        _training_experiment(mlflow, experiment)
    tags = {**plugin_tags(tags.get("arch")), **dict(tags)}  # a plugin model's package and version (issue 27)
    with mlflow.start_run(run_name=run_name, tags={"git_commit": git_commit(), **dict(tags)}):
        flat = _flatten(params)
        items = list(flat.items())
        for i in range(0, len(items), 90):  # MLflow caps params per batch call at 100
            mlflow.log_params(dict(items[i : i + 90]))
        yield Run(mlflow)


# --- experiments -------------------------------------------------------------------------------------
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"  # MLflow 3's kind for model training (its other: genai_development)
NOTE_TAG = "mlflow.note.content"  # the description the UI shows above an experiment's or a run's page


def train_experiment(profile: str) -> str:
    return f"jasrbench/{profile}/train"


def table_experiment(profile: str, table: int | None) -> str:
    return f"jasrbench/{profile}/table{table}" if table is not None else f"jasrbench/{profile}/evaluate"


VIEW_KEY = "jasrbench"  # the table experiments' shared view: ?viewStateShareKey=jasrbench
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"  # where MLflow's UI keeps a shared view's state
# MLflow 3.17's UI takes the page layout from a per-browser "GenAI | Model training" switch (GenAI
# until the user flips it) and reads the experiment's kind only without it; links carry the switch.
ML_WORKFLOW = "workflowType=machine_learning"


def runs_page(experiment_id: str, view: bool = False) -> str:
    """The UI route (after ``http://HOST:PORT/``) of an experiment's runs table, optionally in the table view."""
    query = f"viewStateShareKey={VIEW_KEY}&{ML_WORKFLOW}" if view else ML_WORKFLOW
    return f"#/experiments/{experiment_id}/runs?{query}"


# A description that mentions the switches is ours to rewrite (every version of it did); any other is a user's.
NOTE_MARK = "Params `arch.*`"


def _experiment_note(name: str) -> str:
    """The experiment's description (Markdown, shown above its runs): what its runs are.

    Plain words first: the experiments list shows the description's first characters. A table
    experiment's note names its table and links its view once collect has run (report/mlflow_tables.py).
    """
    kind = name.rsplit("/", 1)[-1]
    what = {"train": "Training runs, one per model and training set (loss and validation curves).",
            "evaluate": "Evaluations that fill no paper table.",
            "robustness": "Evaluations under camera degradations (blur, noise, JPEG, mixed): the robustness track, "
                          "tagged `degradation` (and `trained_degradation` for a model trained on one)."}.get(
        kind, "Evaluations of a paper table, one run per model on the splits it reads.")
    return (f"{what} {NOTE_MARK}: the architecture switches (select two runs → Compare shows which differ). "
            "Tags `training_run_id`, `checkpoint_sha256`: the training run and the checkpoint. Dataset: the "
            "prepared split and its content digest.")


def _training_experiment(mlflow, name: str) -> None:
    """Make ``name`` the active experiment, created (or re-tagged) as a model-training experiment.

    MLflow 3 records an experiment's kind in ``mlflow.experimentKind`` (unset, the
    UI infers one); the kind is set on every experiment this suite logs to,
    including ones an older version of it created. MLflow 3.17's UI lays pages
    out by its per-browser switch instead (see :data:`ML_WORKFLOW`). A description
    is written when there is none (collect rewrites a table experiment's; a user's stays).
    """
    client = mlflow.MlflowClient()
    db = _sqlite_file(tracking_uri())
    if db is not None and client.get_experiment_by_name(name) is None:
        # Artifacts beside the store, not under the current directory (a temporary workspace's is deleted).
        client.create_experiment(name, artifact_location=(db.parent / "mlruns" / name).as_uri())
    experiment = mlflow.set_experiment(name)
    tags = experiment.tags or {}
    if tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    note = _experiment_note(name)
    if NOTE_TAG not in tags:  # collect rewrites a table's note; a user's note stays
        client.set_experiment_tag(experiment.experiment_id, NOTE_TAG, note)


# --- architecture switches ---------------------------------------------------------------------------
def arch_params(arch: str, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``arch.<keyword>`` → value for every build keyword of registry model ``arch``, as built.

    The builder's own defaults, under the registry name's defaults (the ablation
    switches, e.g. ``jasrnet_bl_sr``: fusion False, tasks "sr"), under
    ``overrides`` (the profile's widths, the dataset's point count).
    """
    from .models import spec

    s = spec(arch)
    kwargs = {name: p.default for name, p in inspect.signature(s.builder).parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}
    kwargs.update(s.defaults)
    kwargs.update(overrides or {})
    return {f"arch.{k}": str(v) for k, v in sorted(kwargs.items())}


# --- datasets and lineage ----------------------------------------------------------------------------
def split_dataset(path: str | Path, metadata: Mapping[str, Any], faces: int):
    """An MLflow dataset for the prepared split file ``path`` (name, digest, source, profile; no data).

    Split files are byte-identical for identical inputs, so the file's SHA-256 is
    a content digest: two runs show the same digest exactly when they read the
    same faces. The profile carries the degradation protocol and the face count.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    name = f"{Path(path).parent.name}/{Path(path).stem}"  # 300w/common: as the profile names the split
    path = Path(path).resolve()
    sha = file_sha256(path)
    profile = {"faces": int(faces), "protocol": str(metadata.get("protocol", "clean")),
               "points": int(metadata.get("num_points", 0) or 0), "sha256": sha}

    class PreparedSplitDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, Any]:
            return profile

        def to_dict(self) -> dict[str, str]:  # MetaDataset's leaves the profile out of what is logged
            return {**super().to_dict(), "profile": json.dumps(profile)}

    with warnings.catch_warnings():  # MLflow registers the local-file source twice and warns that it picked one
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        source = resolve_dataset_source(str(path))
    return PreparedSplitDataset(source, name=name, digest=sha[:16])


def split_faces(path: str | Path) -> int:
    """The number of faces in a prepared split file, from its ``names`` array's header (no array is read)."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path) as zf, zf.open("names.npy") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(fh)
    return int(shape[0])


def checkpoint_tags(path: str | Path) -> dict[str, str]:
    """The tag that ties a checkpoint to the runs that wrote and scored it."""
    return {"checkpoint_sha256": file_sha256(path)}


def training_run_id(profile: str, checkpoint_sha256: str) -> str | None:
    """The latest finished training run of ``profile`` that kept the checkpoint with this hash (None if none)."""
    import mlflow

    runs = mlflow.search_runs(experiment_names=[train_experiment(profile)], output_format="list", max_results=1,
                              filter_string=f"tags.checkpoint_sha256 = '{checkpoint_sha256}' "
                                            "and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


# Which test splits fill a column of each paper table (Table 4 reads 300W only): where evaluate logs a run.
# Labels, notes and views of the tables are the report's (jasrbench/report/mlflow_tables.py, run by collect);
# tests/pipeline/test_tracking.py checks this against the columns of jasrbench/report/paper.py.
_300W = frozenset({"300w/full", "300w/common"})
TABLE_SPLITS: dict[int, frozenset[str]] = {
    1: _300W | {"helen/test"}, 2: frozenset({"300w/common", "300w/challenge", "300w/full", "aflw/test"}),
    3: frozenset({"lfw/test"}), 4: _300W, 5: _300W}


def log_evaluation(summary: Mapping[str, Any], entry: Mapping[str, Any], out_dir: Path, *,
                   checkpoint: str | Path | None, overrides: Mapping[str, Any] | None,
                   split_path: str | Path, split_metadata: Mapping[str, Any]) -> None:
    """One evaluation run per paper table the model belongs to (or one in ``.../evaluate``).

    Each carries the switches (``arch.*``), the evaluated split as a dataset and,
    for a trained model, the checkpoint's hash and its training run's id.
    """
    if not enabled():
        return
    # A robustness evaluation (a camera degradation of the test LR) fills no paper table: its own experiment.
    tables = [] if summary.get("degradation") else list(entry.get("tables") or [])
    tags = {"stage": "evaluate", "model": summary["model"], "arch": summary["arch"], "split": summary["split"],
            **{k: summary[k] for k in ("degradation", "trained_degradation") if summary.get(k)},
            "trained_on": str(summary.get("trained_on")), "profile": summary["profile"], **table_tags(tables)}
    params = {k: summary[k] for k in ("model", "arch", "split", "params", "faces", "protocol", "runtime") if k in summary}
    params.update(arch_params(summary["arch"], overrides))
    means = {k: v["mean"] for k, v in summary["metrics"].items()}
    lineage: dict[str, str] = {}
    if checkpoint is not None and Path(checkpoint).is_file():
        lineage = checkpoint_tags(checkpoint)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "false")
        import mlflow

        mlflow.set_tracking_uri(tracking_uri())
        with _store_lock():  # the first use may create the store
            mlflow.MlflowClient().search_experiments(max_results=1)
        train_id = training_run_id(summary["profile"], lineage["checkpoint_sha256"])
        if train_id is None:
            log.warning("%s: no finished MLflow training run kept checkpoint %s; its evaluation runs carry the hash only",
                        summary["model"], checkpoint)
        else:
            lineage["training_run_id"] = train_id
    # A table's experiment holds the evaluations on the splits its columns read (Table 4: 300W, not LFW).
    # The paper row that leads a run's name, and the table's view, are written by collect (report side).
    for table in [t for t in tables if summary["split"] in TABLE_SPLITS.get(t, ())] or [None]:
        name = f"{summary['model']} on {summary['split']}"
        experiment = (f"jasrbench/{summary['profile']}/robustness" if summary.get("degradation")
                      else table_experiment(summary["profile"], table))
        if summary.get("degradation"):
            name = f"{name} under {summary['degradation']}"
        with start_run(experiment, name, {**tags, **lineage}, params) as run:
            run.log_metrics(means)
            run.log_split(split_path, split_metadata, split_faces(split_path), "evaluation",
                          faces_evaluated=summary.get("faces", 0))
            for file in ("summary.json", "per_image.csv", "ced.csv"):
                if (out_dir / file).is_file():
                    run.log_artifact(out_dir / file)
