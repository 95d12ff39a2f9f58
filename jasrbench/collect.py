"""``jasrbench collect``: merge every evaluation summary into ``results/<profile>/metrics.json``.

DVC's metrics file for the profile and the input of the report and the regression gate::

    {"profile": "smoke",
     "runs": {RUN: {"model": MODEL, "trained_on": "300w",
                    "splits": {SPLIT: {"available": true, "params": N, "psnr": {"mean": …, …}, …}}}},
     "models": {MODEL: {SPLIT: {"run": RUN, "available": true, "trained_on": "300w", "params": N,
                                "psnr": {"mean": …, "ci_low": …, "ci_high": …, "n": …}, …}}},
     "stand_in": {"lfw": "…"}}

``runs`` keeps every evaluation (model × training dataset × split); ``models``, which the tables
and the gate read, keeps one run per model and split (:func:`jasrbench.dag.table_run_dataset`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from . import dag
from .errors import DataError
from .files import atomic_write_json, read_json


def collect(params: dict[str, Any], root: str | Path = ".") -> dict[str, Any]:
    """Read the summaries of every evaluation stage of the profile's DAG."""
    root = Path(root)
    stages = dag.stages(params)
    runs: dict[str, dict[str, Any]] = {}
    for section in ("evaluate", "evaluate_untrained"):
        for item in stages[section].values():
            run = runs.setdefault(item["run"], {"model": item["model"], "trained_on": _run_dataset(item),
                                                "splits": {}})
            run["splits"][item["split"]] = _entry(root / item["out"] / "summary.json")
    # The robustness track: RUN → DEGRADATION → SPLIT, beside the clean values of "runs".
    robustness: dict[str, dict[str, Any]] = {}
    for section in ("robustness", "robustness_untrained"):
        for item in stages[section].values():
            run = robustness.setdefault(item["run"], {"model": item["model"], "trained_on": _run_dataset(item),
                                                      "degradations": {}})
            entry = _entry(root / item["out"] / "summary.json")
            run["degradations"].setdefault(item["degradation"], {})[item["split"]] = entry
    stand_in = {name: d["stand_in"] for name, d in params["data"]["datasets"].items() if d.get("stand_in")}
    return {"profile": params["profile"], "runs": runs, "models": table_view(runs),
            **({"robustness": robustness} if robustness else {}),
            **({"stand_in": stand_in} if stand_in else {})}


def _entry(path: Path) -> dict[str, Any]:
    """One evaluation's summary as metrics.json keeps it (a non-finite metric is an error naming the file)."""
    summary = read_json(path)
    entry: dict[str, Any] = {"available": bool(summary.get("available", False)), "params": summary.get("params"),
                             "trained_on": summary.get("trained_on")}
    if not entry["available"]:
        entry["reason"] = summary.get("reason", "unavailable")
    for key in ("trained_degradation",):
        if summary.get(key):
            entry[key] = summary[key]
    for key, value in summary.get("metrics", {}).items():
        if not all(math.isfinite(v) for v in _numbers(value)):
            raise DataError(path, f"metric {key} is not finite: {value}")
        entry[key] = value
    return entry


def _run_dataset(item: dict[str, Any]) -> str:
    """The training dataset of an evaluation's run (``<model>-<dataset>``, config.run_id)."""
    return item["run"][len(item["model"]) + 1:]


def table_view(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """MODEL → SPLIT → the entry of the run the tables show (``run`` names it)."""
    by_model: dict[tuple[str, str], dict[str, str]] = {}
    for rid, run in runs.items():
        for split in run["splits"]:
            by_model.setdefault((run["model"], split), {})[run["trained_on"]] = rid
    models: dict[str, dict[str, Any]] = {}
    for (model, split), candidates in sorted(by_model.items()):
        rid = candidates[dag.table_run_dataset(split, sorted(candidates))]
        models.setdefault(model, {})[split] = {"run": rid, **runs[rid]["splits"][split]}
    return models


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [float(v) for v in value.values() if isinstance(v, (int, float))]
    return [float(value)] if isinstance(value, (int, float)) else []


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=None, help="params file (default: params.yaml)")
    parser.add_argument("--out", help="output file (default: results/<profile>/metrics.json)")


def run(args: argparse.Namespace) -> int:
    params = dag.load_checked(args.params)
    merged = collect(params)
    out = Path(args.out or f"results/{params['profile']}/metrics.json")
    atomic_write_json(out, merged)
    print(f"wrote {out}: {len(merged['models'])} models")
    from .report.mlflow_tables import publish

    for experiment in publish(params["profile"]):  # run names by paper row, table notes and views
        print(f"MLflow: {experiment} named by paper row, its table view written")
    return 0
