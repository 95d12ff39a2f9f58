"""``jasrbench report``: the paper's tables, the figures and a README from one profile's results.

The DAG's last stage (``jasrbench report --results results/<profile> --out results/<profile>``) reads
``metrics.json`` (from ``collect``), the per-image values and CED curves under ``eval/``, the training
histories under ``train/``, the checkpoints under ``models/<profile>/`` (the comparison figure
super-resolves a few fixed test faces with every SR model) and, when present,
``results/model_costs.csv`` (``benchmarks/bench_model_costs.py``). It writes ``tables/`` (Tables 1–5
and costs as .tex/.csv/.md: :mod:`.results` → :mod:`.tables` → :mod:`.render`), ``figures/``
(comparison, CED and training curves: :mod:`.figures`) and ``README.md`` (:mod:`.readme`), each
atomically. Defaults come from ``params.yaml``'s profile.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import dag
from ..params import PARAMS_FILE
from ..errors import ConfigError
from ..files import read_json
from . import figures, paper, render, tables
from .results import Results

log = logging.getLogger(__name__)

TABLE_FILES = [f"table{i}" for i in range(1, 6)] + ["costs"]
CED_SPLITS = ("300w/common", "300w/challenge", "300w/full", "aflw/test")
GRID_FACES = 4


@dataclass
class Report:
    results: Results
    out: Path
    tables: list[tables.Table] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)  # stem → caption
    grid_faces: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be drawn, and why
    robustness: list[str] = field(default_factory=list)  # the README's robustness section (issue 26)
    seconds: float = 0.0


# --- which models go where -----------------------------------------------------------------------------
def _ablation_only() -> set[str]:
    """Models that appear only in Tables 4–5 (kept out of the comparison grid and the main curves)."""
    main = {m for spec in paper.TABLES if spec.number <= 3 for r in (*spec.rows, *spec.optional_rows)
            for m in (*r.models, *(r.nme_models or ()))}
    rest = {m for spec in paper.TABLES if spec.number > 3 for r in spec.rows
            for m in (*r.models, *(r.nme_models or ()))}
    return rest - main


def _ordered(models: set[str] | list[str]) -> list[str]:
    order = {m: i for i, m in enumerate(paper.model_order())}
    return sorted(models, key=lambda m: (order.get(m, len(order)), m))


def _label(model: str) -> str:
    label = paper.model_labels().get(model, model)
    return "CPM+SBR" if model == "cpm" else label


def main_split(results: Results) -> str:
    """The 300W test split of Table 1 (full when available, else common)."""
    spec = paper.TABLES[0]
    models = [m for r in spec.rows for m in r.models]
    split, _ = tables.choose_split(results, spec.columns[0], models)
    return split or "300w/common"


# --- the comparison grid ---------------------------------------------------------------------------------
def choose_faces(names: list[str], k: int) -> list[str]:
    """``k`` faces spread evenly over the sorted names (deterministic; the same faces for every model)."""
    names = sorted(names)
    if len(names) <= k:
        return names
    idx = np.round(np.linspace(0, len(names) - 1, k + 2)[1:-1]).astype(int)
    return [names[i] for i in idx]


def comparison_figure(report: Report, models_dir: Path, prepared: Path, faces: int, device: str) -> None:
    import torch

    from ..data.split import load_split
    from ..runtime import load_model, model_from_checkpoint
    from ..scoring import score_split

    results = report.results
    split = main_split(results)
    skip = _ablation_only()
    sr_models = _ordered([m for m in results.models if m not in skip
                          and isinstance((results.entry(m, split) or {}).get("psnr"), dict)])
    if not sr_models:
        report.notes.append(f"comparison figure: no super-resolution model was evaluated on {split}")
        return
    per_image = {m: pd.read_csv(d / "per_image.csv").set_index("name") for m in sr_models
                 if (d := results.eval_dir(m, split)) is not None and (d / "per_image.csv").is_file()}
    names = sorted(set.intersection(*(set(f.index) for f in per_image.values()))) if per_image else []
    dataset, _, split_name = split.partition("/")
    split_path = prepared / dataset / f"{split_name}.npz"
    if not names or not split_path.is_file():
        report.notes.append(f"comparison figure: {split_path if not split_path.is_file() else 'no per-image values'}"
                            " not found")
        return
    data = load_split(split_path)
    position = {str(n): i for i, n in enumerate(data.names)}
    chosen = [n for n in choose_faces([n for n in names if n in position], faces)]
    idx = np.array([position[n] for n in chosen])
    faces = data.subset(idx)
    lr, hr, true_pts = faces.lr, faces.hr, faces.landmarks
    dev = torch.device(device)
    columns = [figures.GridColumn("LR 16×16", lr)]
    for model in sr_models:
        if model == "bicubic" or not (results.models[model].get(split) or {}).get("trained_on"):
            net, _ = load_model(model, dev)
            origin = "registry"
        else:
            folder = results.eval_dir(model, split)
            ckpt = models_dir / folder.parent.name / "model.pt" if folder is not None else models_dir / "?"
            if not ckpt.is_file():
                report.notes.append(f"comparison figure: {_label(model)} left out ({ckpt} not found)")
                continue
            net, _ = model_from_checkpoint(ckpt, dev)
            origin = str(ckpt)
        scores = score_split(net, faces, dev, len(faces), keep_sr=True)
        values = per_image.get(model)
        captions = None
        if values is not None and "psnr" in values.columns:
            captions = [f"{values.loc[n, 'psnr']:.1f} dB" for n in chosen]
        columns.append(figures.GridColumn(_label(model), scores.sr, scores.landmarks, figures.PRED_COLOUR, captions))
        log.debug("comparison figure: %s from %s", model, origin)
    columns.append(figures.GridColumn("HR", hr, true_pts, figures.TRUE_COLOUR))
    row_labels = [_face_label(n) for n in chosen]
    figures.comparison_grid(columns, row_labels, report.out / "figures" / "comparison")
    report.grid_faces = chosen
    report.figures["comparison"] = (
        f"×8 super-resolution of {len(chosen)} fixed {split} test faces (spread evenly over the sorted face names): "
        "LR input (nearest-neighbour), each model's output with its PSNR on that face, and HR. Green: landmarks the "
        "model predicts; red: ground truth on HR.")


def _face_label(name: str) -> str:
    """``lfpw/testset/image_0004`` → ``lfpw`` over ``image_0004`` (two short lines beside a row)."""
    parts = [p for p in name.split("/") if p not in ("testset", "trainset", "test", "train")]
    return "\n".join([parts[0], "/".join(parts[1:])]) if len(parts) > 1 else name


# --- CED and training curves ----------------------------------------------------------------------------
def _ced_curve(results: Results, model: str, split: str, dashed: bool = False) -> figures.Curve | None:
    folder = results.eval_dir(model, split)
    if folder is None or not (folder / "ced.csv").is_file():
        return None
    frame = pd.read_csv(folder / "ced.csv")
    if frame.empty or not {"nme", "fraction"} <= set(frame.columns):
        return None
    auc = ((results.entry(model, split) or {}).get("auc_0.08") or {}).get("mean")
    return figures.Curve(_label(model), model, frame["nme"].to_numpy(), frame["fraction"].to_numpy(),
                         None if auc is None else float(auc), dashed)


def ced_figures(report: Report, palette: dict[str, str]) -> None:
    results = report.results
    t2 = paper.TABLES[1]
    t2_models = _ordered({m for r in (*t2.rows, *t2.optional_rows) for m in r.models if results.has_model(m)})
    panels = []
    for split in CED_SPLITS:
        curves = [c for m in t2_models if (c := _ced_curve(results, m, split)) is not None]
        if curves:
            panels.append((f"{_split_title(split)} (n = {results.faces(split)})", curves))
    if panels:
        figures.ced_figure(panels, report.out / "figures" / "ced", palette)
        report.figures["ced"] = ("Cumulative error distribution of the Table 2 models: fraction of test faces whose "
                                 "NME (×100) is at most x; AUC@0.08 in the legend; dotted line at 0.08.")
    else:
        report.notes.append("CED figure: no Table 2 model has a CED curve in these results")
    split = tables.choose_split(results, paper.TABLES[3].columns[1], ["jasrnet"])[0] or "300w/common"
    ablations = _ordered({m for spec in paper.TABLES[3:] for r in spec.rows for m in r.models_for("nme")
                          if results.has_model(m)})
    curves = [c for m in ablations if (c := _ced_curve(results, m, split, dashed=m != "jasrnet")) is not None]
    if curves:
        figures.ced_figure([(f"Tables 4–5 models, {_split_title(split)} (n = {results.faces(split)})", curves)],
                           report.out / "figures" / "ced_ablations", palette)
        report.figures["ced_ablations"] = "Cumulative error distribution of the ablations and variants (Tables 4–5)."


def _split_title(split: str) -> str:
    dataset, _, name = split.partition("/")
    return f"{tables.DATASET_NAMES.get(dataset, dataset)} {name}"


def training_figures(report: Report, palette: dict[str, str]) -> None:
    train_dir = report.results.root / "train"
    histories: dict[str, pd.DataFrame] = {}
    labels: dict[str, str] = {}
    models: dict[str, str] = {}
    for path in sorted(train_dir.glob("*/history.csv")):
        run = path.parent.name
        info = read_json(path.parent / "train.json") if (path.parent / "train.json").is_file() else {}
        model, _, dataset = run.rpartition("-") if "model" not in info else (info["model"], "", info.get("dataset", ""))
        frame = pd.read_csv(path)
        if frame.empty or "epoch" not in frame.columns:
            continue
        histories[run] = frame
        models[run] = model
        labels[run] = _label(model) + (f" [{dataset}]" if dataset and dataset != "300w" else "")
    if not histories:
        report.notes.append(f"training curves: no history.csv under {train_dir}")
        return
    skip = _ablation_only()
    order = {m: i for i, m in enumerate(_ordered(set(models.values())))}
    runs = sorted(histories, key=lambda r: (order[models[r]], r))
    run_palette = {r: palette.get(models[r], "#444444") for r in runs}
    main = [r for r in runs if models[r] not in skip]
    abl = [r for r in runs if models[r] in skip or models[r] == paper.REFERENCE_MODEL]
    if main:
        figures.training_curves({r: histories[r] for r in main}, labels, report.out / "figures" / "training_curves",
                                run_palette)
        report.figures["training_curves"] = ("Training curves of the Tables 1–3 models: mean training loss per epoch "
                                             "(log scale) and the validation metrics that select the kept epoch.")
    if len(abl) > 1:
        figures.training_curves({r: histories[r] for r in abl}, labels,
                                report.out / "figures" / "training_curves_ablations", run_palette,
                                dashed=[r for r in abl if models[r] != paper.REFERENCE_MODEL])
        report.figures["training_curves_ablations"] = "Training curves of the ablations and variants (Tables 4–5)."


# --- the whole report ----------------------------------------------------------------------------------
def build_report(results_dir: str | Path, out: str | Path, *, models_dir: str | Path | None = None,
                 prepared: str | Path | None = None, costs: str | Path | None = None, faces: int = GRID_FACES,
                 figures_on: bool = True, params: dict[str, Any] | None = None, device: str = "cpu") -> Report:
    from . import readme

    start = time.perf_counter()
    results = Results(results_dir)
    out = Path(out)
    report = Report(results, out)
    cost_frame = tables.load_costs(costs) if costs else None
    report.tables = tables.build_all(results, cost_frame, params)  # params: plugin models' tables
    table_dir = out / "tables"
    written = set()
    for table in report.tables:
        written |= {p.name for p in render.write_table(table, table_dir).values()}
    for stale in (table_dir / f"{n}.{e}" for n in TABLE_FILES for e in ("tex", "csv", "md")):
        if stale.name not in written and stale.exists():
            stale.unlink()  # e.g. costs.* after model_costs.csv went away
    if figures_on:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        palette = figures.colours(paper.model_order() + sorted(set(results.models) - set(paper.model_order())))
        models_dir = Path(models_dir) if models_dir else Path("models") / results.profile
        prepared = Path(prepared) if prepared else Path((params or {}).get("data", {}).get("prepared",
                                                                                          "datasets/prepared"))
        comparison_figure(report, models_dir, prepared, faces, device)
        ced_figures(report, palette)
        training_figures(report, palette)
    from . import robustness

    report.robustness = robustness.write(results.root, out, palette if figures_on else None)
    report.seconds = time.perf_counter() - start
    readme.write(report, params)
    return report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", help="a profile's results folder (default: results/<profile of params.yaml>)")
    parser.add_argument("--out", help="where tables/, figures/ and README.md go (default: --results)")
    parser.add_argument("--models", help="checkpoints for the comparison figure (default: models/<profile>)")
    parser.add_argument("--prepared", help="prepared-data root (default: the profile's data.prepared)")
    parser.add_argument("--params", default=None, help="params file (default: params.yaml, if present)")
    parser.add_argument("--costs", default="results/model_costs.csv",
                        help="model costs CSV from benchmarks/bench_model_costs.py (default: %(default)s; "
                             "no cost table when absent)")
    parser.add_argument("--faces", type=int, default=GRID_FACES, help="faces in the comparison figure (default 4)")
    parser.add_argument("--no-figures", action="store_true", help="tables and README only")
    parser.add_argument("--device", default="cpu", help="device for the comparison figure's models (default cpu)")


def run(args: argparse.Namespace) -> int:
    params = None
    params_path = Path(args.params or PARAMS_FILE)
    if params_path.is_file():
        params = dag.load_checked(params_path)
    elif args.params:
        raise ConfigError(f"{params_path}: file not found")
    if args.results is None and params is None:
        raise ConfigError("give --results (no params.yaml here to take the profile from)")
    results_dir = Path(args.results or f"results/{params['profile']}")
    if params is not None and params.get("profile") != Results(results_dir).profile:
        params = None  # another profile's settings would mislabel the README
    if args.faces < 1:
        raise ConfigError("--faces must be at least 1")
    report = build_report(results_dir, args.out or results_dir, models_dir=args.models, prepared=args.prepared,
                          costs=args.costs, faces=args.faces, figures_on=not args.no_figures, params=params,
                          device=args.device)
    out = Path(args.out or results_dir)
    print(f"wrote {out / 'tables'} ({len(report.tables)} tables), {out / 'figures'} ({len(report.figures)} figures), "
          f"{out / 'README.md'} in {report.seconds:.1f} s")
    for note in report.notes:
        print(f"note: {note}")
    return 0
