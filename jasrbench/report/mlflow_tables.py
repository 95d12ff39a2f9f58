"""The paper tables in MLflow: each table experiment's runs named after the paper row they fill, its
description and its shared table view (the report side of tracking; run by ``collect``).

``evaluate`` logs one run per table whose columns read the split (:data:`jasrbench.tracking.TABLE_SPLITS`),
named ``MODEL on SPLIT``; :func:`publish` then leads each name with its paper row (``BL: jasrnet_bl_sr on
300w/common``), tags ``paper_row`` and writes the description and the view. A label edit in
:mod:`jasrbench.report.paper` is applied by rerunning collect, and no training or evaluation.
"""

from __future__ import annotations

import json
from typing import Any

from .. import tracking
from ..tracking import NOTE_MARK, NOTE_TAG, VIEW_TAG, runs_page

def table_metrics(table: int | None) -> list[str]:
    """The metrics paper table ``table`` reports, in its column order (PSNR and NME for Table 4)."""
    from .paper import TABLES

    spec = next((t for t in TABLES if t.number == table), None)
    return list(dict.fromkeys(c.metric for c in spec.columns if c.metric != "params")) if spec else []


def paper_row(table: int, model: str) -> str | None:
    """The label(s) of the rows of paper table ``table`` that ``model`` fills (BL for both halves of BL)."""
    from .paper import TABLES

    labels = [row.label for spec in TABLES if spec.number == table for row in spec.rows + spec.optional_rows
              if model in row.models or model in (row.nme_models or ())]
    return " / ".join(labels) or None


# Shown first among the switches in the table view (the rest follow alphabetically).
SWITCH_ORDER = ("arch.tasks", "arch.fusion", "arch.long_skip", "arch.fusion_mode", "arch.n_stages",
                "arch.n_shared_blocks", "arch.n_feats")


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # MLflow UI's column id


RUN_NAME_COLUMN = _column("attributes", "Run Name")


def table_view(table: int | None, runs: list) -> dict[str, Any]:
    """The state of the UI's shared table view over ``runs`` (MLflow ``Run`` objects of one table experiment).

    Columns: the table's metrics in its order, the parameter count where the
    table reports it, and the ``arch.*`` switches whose values differ between
    the runs (all of them while they do not); rows in the order of the paper
    row labels the run names start with. The dataset column stays in the
    default view: on a laptop screen it would push the switches out of sight.
    """
    from .paper import TABLES

    spec = next((t for t in TABLES if t.number == table), None)
    arch = sorted({k for r in runs for k in r.data.params if k.startswith("arch.")},
                  key=lambda k: (SWITCH_ORDER.index(k) if k in SWITCH_ORDER else len(SWITCH_ORDER), k))
    differ = [k for k in arch if len({r.data.params.get(k) for r in runs}) > 1]
    columns = [_column("metrics", m) for m in table_metrics(table)]
    if spec and any(c.metric == "params" for c in spec.columns):
        columns.append(_column("params", "params"))
    columns += [_column("params", k) for k in (differ or arch)]
    # The grid sorts metric columns by name (NME before PSNR): the column order puts them in the table's.
    order = [RUN_NAME_COLUMN, "runDateAndNestInfo", "duration", *columns]
    widths = {RUN_NAME_COLUMN: 300} | {c: 120 for c in columns if c.startswith("metrics.")}
    return {"selectedColumns": columns, "columnOrder": order, "columnWidths": widths,
            "orderByKey": _column("tags", "mlflow.runName"), "orderByAsc": True}


def table_note(table: int, experiment_id: str) -> str:
    """A table experiment's description: which table, its metrics, and the link to its table view."""
    metrics = ", ".join(m.upper() for m in table_metrics(table))
    return (f"Paper Table {table}, one run per model on the splits it reads, named after the table's row. "
            f"**[Table view]({runs_page(experiment_id, view=True)})**: {metrics} and the switches that differ. "
            f"{NOTE_MARK}: the architecture switches (select two runs → Compare shows which differ). "
            "Tags `training_run_id`, `checkpoint_sha256`: the training run and the checkpoint. Dataset: the "
            "prepared split and its content digest.")


def publish(profile: str) -> list[str]:
    """Name every evaluation run of ``profile``'s table experiments after its paper row, and write each
    table's description and view; returns the experiments written. Idempotent; nothing without MLflow."""
    if not tracking.enabled():
        return []
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    client = mlflow.MlflowClient()
    written = []
    for table in sorted(tracking.TABLE_SPLITS):
        experiment = client.get_experiment_by_name(tracking.table_experiment(profile, table))
        if experiment is None:
            continue
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'evaluate'",
                                  max_results=1000)
        for run in runs:
            tags = run.data.tags
            row = paper_row(table, tags["model"]) or tags["model"]
            name = f"{row}: {tags['model']} on {tags['split']}"  # the UI shows the run name first
            if tags.get("paper_row") != row:
                client.set_tag(run.info.run_id, "paper_row", row)
            if run.info.run_name != name:
                client.set_tag(run.info.run_id, "mlflow.runName", name)
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'evaluate'",
                                  max_results=1000)
        note = experiment.tags.get(NOTE_TAG, NOTE_MARK)
        if NOTE_MARK in note:  # ours (or none): a user's description stays
            client.set_experiment_tag(experiment.experiment_id, NOTE_TAG, table_note(table, experiment.experiment_id))
        client.set_experiment_tag(experiment.experiment_id, VIEW_TAG, json.dumps(table_view(table, runs)))
        written.append(experiment.name)
    return written
