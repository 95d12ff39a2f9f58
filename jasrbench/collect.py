"""``jasrbench collect``: merge every evaluation summary into ``results/<profile>/metrics.json``.

The result is DVC's metrics file for the profile and the input of the report
and the regression gate::

    {"profile": "smoke",
     "models": {MODEL: {SPLIT: {"available": true, "trained_on": "300w", "params": N,
                                "psnr": {"mean": …, "ci_low": …, "ci_high": …, "n": …}, …}}},
     "stand_in": {"lfw": "…"}}
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from . import config as cfgmod
from .errors import DataError
from .io import atomic_write_json, read_json


def collect(params: dict[str, Any], root: str | Path = ".") -> dict[str, Any]:
    """Read the summaries of every evaluation stage of the profile's DAG."""
    root = Path(root)
    dag = cfgmod.derive_dag(params)
    models: dict[str, dict[str, Any]] = {}
    for section in ("evaluate", "evaluate_untrained"):
        for item in dag[section].values():
            path = root / item["out"] / "summary.json"
            summary = read_json(path)
            entry: dict[str, Any] = {"available": bool(summary.get("available", False)), "params": summary.get("params"),
                                     "trained_on": summary.get("trained_on")}
            if not entry["available"]:
                entry["reason"] = summary.get("reason", "unavailable")
            for key, value in summary.get("metrics", {}).items():
                if not all(math.isfinite(v) for v in _numbers(value)):
                    raise DataError(path, f"metric {key} is not finite: {value}")
                entry[key] = value
            models.setdefault(item["model"], {})[item["split"]] = entry
    stand_in = {name: d["stand_in"] for name, d in params["data"]["datasets"].items() if d.get("stand_in")}
    return {"profile": params["profile"], "models": models, **({"stand_in": stand_in} if stand_in else {})}


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [float(v) for v in value.values() if isinstance(v, (int, float))]
    return [float(value)] if isinstance(value, (int, float)) else []


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=None, help="params file (default: params.yaml)")
    parser.add_argument("--out", help="output file (default: results/<profile>/metrics.json)")


def run(args: argparse.Namespace) -> int:
    params = cfgmod.load_params(args.params)
    merged = collect(params)
    out = Path(args.out or f"results/{params['profile']}/metrics.json")
    atomic_write_json(out, merged)
    print(f"wrote {out}: {len(merged['models'])} models")
    return 0
