"""The paper's Tables 1–5 and a cost table: which value fills each cell, and the marks it carries.

A table is a grid of :class:`Cell` (rows = the paper's rows from :mod:`.paper`, columns =
its metrics) filled from the results frame (:mod:`.results`): our mean with its 95%
bootstrap interval (the standard deviation over folds for verification accuracy) beside
the paper's value; the best reproduced value of each column in bold (direction-aware, at
the printed precision, reference rows not ranked); † where JASRNet's paired test against
the model is significant; and "—" with a footnote saying why a cell has no value.
:mod:`.render` writes the tables as LaTeX, CSV and Markdown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import paper
from .results import METRIC_NAMES, PER_IMAGE_METRICS, Results

log = logging.getLogger(__name__)

DAGGER = "†"
DASH = "—"
PARAM_UNIT = 1024**2
DATASET_NAMES = {"300w": "300W", "helen": "HELEN", "aflw": "AFLW", "lfw": "LFW"}


# --- cells and tables ------------------------------------------------------------------------------
@dataclass
class Cell:
    row: str
    column: str  # Column.key
    model: str | None = None  # the model that filled the cell
    split: str | None = None
    metric: str | None = None
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    std: float | None = None
    n: int | None = None
    paper: float | None = None
    note: str | None = None  # why ``mean`` is missing
    flag: str | None = None  # training-health footnote: the model did not learn in this profile
    paper_note: str | None = None  # why ``paper`` is missing
    best: bool = False
    ranked: bool = True
    test: dict[str, Any] | None = None  # paired test against the reference model (JASRNet)

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return self.std  # verification accuracy: std over folds
        return (self.ci_high - self.ci_low) / 2

    @property
    def significant(self) -> bool:
        return bool(self.test and self.test.get("significant"))


@dataclass
class Table:
    name: str  # file stem
    caption: str
    columns: tuple[paper.Column, ...]
    rows: list[str]
    cells: dict[tuple[str, str], Cell]
    with_paper: bool = True
    column_notes: dict[str, str] = field(default_factory=dict)  # column key → note on its header
    notes: list[str] = field(default_factory=list)  # general notes printed below the table
    legend: list[str] = field(default_factory=list)  # what ±, bold, † mean
    title: str = ""  # "Table 1" (LaTeX numbers its captions itself)

    def cell(self, row: str, column: str) -> Cell:
        return self.cells[(row, column)]

    def marks(self) -> dict[str, str]:
        """Footnote letter of each distinct note text, in reading order (headers, then cells row by row)."""
        order: list[str] = [self.column_notes[c.key] for c in self.columns if c.key in self.column_notes]
        for row in self.rows:
            for col in self.columns:
                cell = self.cell(row, col.key)
                order += [t for t in (cell.note, cell.flag, cell.paper_note if self.with_paper else None) if t]
        letters: dict[str, str] = {}
        for text in order:
            if text not in letters:
                letters[text] = _letter(len(letters))
        return letters


def _letter(i: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[i] if i < 26 else f"z{i - 25}"


# --- filling a table -------------------------------------------------------------------------------
_NOT_DEFINED = {"psnr": "outputs no super-resolved image", "ssim": "outputs no super-resolved image",
                "nme": "predicts no landmarks", "acc": "was not verified on this split"}


def _available(results: Results, model: str, split: str) -> bool | None:
    """Whether the model's evaluation on the split is available; None where there is none."""
    status = results.status(model, split)
    return None if status is None else status[0]


def choose_split(results: Results, column: paper.Column, models: Iterable[str]) -> tuple[str | None, str | None]:
    """(split filling the column, note on the header or None).

    The first candidate split on which any of the table's models has an available
    evaluation; otherwise the first with an (unavailable) evaluation; otherwise the
    first candidate (no model was evaluated on it).
    """
    if not column.splits:
        return None, None
    models = list(models)
    chosen = None
    for split in column.splits:
        if any(_available(results, m, split) for m in models):
            chosen = split
            break
    if chosen is None:
        for split in column.splits:
            if any(_available(results, m, split) is not None for m in models):
                chosen = split
                break
    chosen = chosen or column.splits[0]
    note = None
    preferred = column.splits[0]
    if chosen != preferred:
        reason = _split_reason(results, preferred, models)
        n = results.faces(chosen)
        dataset = DATASET_NAMES.get(preferred.partition("/")[0], preferred.partition("/")[0])
        size = f" ({n} test faces)" if n else ""
        note = f"{dataset} = {chosen}{size} in place of the paper's {preferred}, which {reason}"
    return chosen, note


def _split_reason(results: Results, split: str, models: Iterable[str]) -> str:
    for m in [*models, *results.models]:
        status = results.status(m, split)
        if status is not None and not status[0]:
            return f"is unavailable here ({status[1] or 'unavailable'})"
    return f"was not evaluated in profile {results.profile}"


def _params(results: Results, model: str) -> float | None:
    """The model's parameter count (from its first evaluation that recorded it)."""
    f = results.frame
    counts = f.loc[(f["model"] == model) & (f["metric"] == "params"), "mean"].dropna()
    return float(counts.iloc[0]) if len(counts) else None


def fill_cell(results: Results, row: paper.Row, column: paper.Column, split: str | None) -> Cell:
    cell = Cell(row.label, column.key, split=split, metric=row.metric_override.get(column.metric, column.metric),
                paper=row.reported.get(column.key), ranked=not (row.reference or row.floor))
    if cell.paper is None:
        cell.paper_note = (row.not_in_paper or ("not in the paper: the no-learning floor of this benchmark"
                                                if row.floor else "not reported in the paper"))
    candidates = row.models_for(column.metric)
    model = next((m for m in candidates if results.has_model(m)), None)
    if model is None:
        cell.note = f"not computed: the model is not part of profile {results.profile}"
        return cell
    cell.model = model
    if row.reference and column.metric not in row.metric_override:
        cell.note = "not applicable to the HR reference"
        return cell
    if column.metric == "params":
        count = _params(results, model)
        if not count:
            cell.note = "no learned parameters" if count == 0 else "parameter count not recorded"
            return cell
        cell.mean = count / PARAM_UNIT
        return cell
    status = results.status(model, split) if split else None
    if status is None:
        others = [s for m in results.models if (s := results.status(m, split)) is not None] if split else []
        unavailable = [reason for available, reason in others if not available]
        if unavailable:  # the split cannot be computed with the data at hand: say why, not "not evaluated"
            cell.note = _unavailable(split, unavailable[0])
        elif others:
            cell.note = f"not computed: this model was not evaluated on {split} in profile {results.profile}"
        else:
            cell.note = f"not computed: no model was evaluated on {split} in profile {results.profile}"
        return cell
    if not status[0]:
        cell.note = _unavailable(split, status[1])
        return cell
    value = results.value(model, split, cell.metric) if cell.metric != "params" else None
    if value is None:
        cell.note = f"not defined: the model {_NOT_DEFINED.get(column.metric, f'reports no {cell.metric}')}"
        return cell
    cell.mean = float(value["mean"])
    cell.ci_low = _float(value["ci_low"])
    cell.ci_high = _float(value["ci_high"])
    cell.std = _float(value["std"])
    cell.n = None if _float(value["n"]) is None else int(value["n"])
    if cell.ranked:
        cell.flag = value["flag"] if isinstance(value["flag"], str) else None
        if column.metric in PER_IMAGE_METRICS and isinstance(value["vs"], str):  # the frame's paired test
            cell.test = {"against": value["vs"], "mean_diff": float(value["diff"]),
                         "ci_low": float(value["diff_ci_low"]), "ci_high": float(value["diff_ci_high"]),
                         "p_bootstrap": float(value["p_bootstrap"]), "p_wilcoxon": float(value["p_wilcoxon"]),
                         "significant": bool(value["significant"])}
    return cell


def _unavailable(split: str, reason: str | None) -> str:
    return f"not computed: {split} is unavailable ({reason or 'no reason given'})"


def _float(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def mark_best(table: Table) -> None:
    """Bold the best value of each column (ties at the printed precision all bold)."""
    for col in table.columns:
        cells = [table.cell(r, col.key) for r in table.rows]
        ranked = [c for c in cells if c.ranked and c.mean is not None and not c.flag]
        if not ranked:
            continue
        shown = [round(c.mean, col.decimals) for c in ranked]
        best = max(shown) if col.higher_is_better else min(shown)
        for c, v in zip(ranked, shown, strict=True):
            c.best = v == best


def build_paper_table(results: Results, spec: paper.PaperTable, extra_rows: Iterable[paper.Row] = ()) -> Table:
    """``extra_rows``: rows that are not in the paper (plugin models, :func:`plugin_rows`), after the paper's."""
    rows = list(spec.rows) + [r for r in spec.optional_rows if any(results.has_model(m) for m in r.models)]
    rows += [r for r in extra_rows if r.label not in {x.label for x in rows}]
    table_models = [m for r in rows for m in (*r.models, *(r.nme_models or ()))]
    cells: dict[tuple[str, str], Cell] = {}
    column_notes: dict[str, str] = {}
    for col in spec.columns:
        split, note = choose_split(results, col, table_models)
        if note:
            column_notes[col.key] = note
        for row in rows:
            cells[(row.label, col.key)] = fill_cell(results, row, col, split)
    caption = f"{spec.title}. Ours (profile {results.profile}) beside the values reported by Yin et al. (AAAI 2020)."
    stand_ins = {split.partition('/')[0] for col in spec.columns for split in col.splits} & set(results.stand_in)
    notes = []
    for dataset in sorted(stand_ins):
        label = DATASET_NAMES.get(dataset, dataset)
        caption += f" The {label} column is a stand-in: {results.stand_in[dataset]}."
        notes.append(f"{label} here is a stand-in: {results.stand_in[dataset]}; the paper's {label} values are not "
                     f"directly comparable.")
    notes += paper.table_notes(spec, results.protocols)
    for row in rows:
        used = {c.model for (r, _), c in cells.items() if r == row.label and c.model}
        for m in sorted(used):
            if m != row.models[0] and m not in (row.nme_models or ()):
                notes.append(f"{row.label}: model {m} ({row.models[0]} is not part of this profile).")
    sizes: dict[str, str] = {}
    for cell in cells.values():
        if cell.n is not None and cell.split:
            unit = "pairs" if cell.metric and cell.metric.startswith("acc") else "faces"
            sizes.setdefault(f"{cell.split} ({unit})", f"{cell.split}: {cell.n} {unit}")
    tested = [v for _, v in sorted(sizes.items())]
    table = Table(spec.name, caption, spec.columns, [r.label for r in rows], cells, True, column_notes, notes,
                  title=f"Table {spec.number}")
    mark_best(table)
    table.legend = _legend(table, spec, tested)
    return table


def _legend(table: Table, spec: paper.PaperTable, tested: list[str]) -> list[str]:
    metrics = {c.metric for c in spec.columns}
    lines = []
    if metrics & set(PER_IMAGE_METRICS):
        lines.append("Ours: mean ± half-width of its 95% percentile-bootstrap interval over the test images "
                     "(exact interval in the CSV).")
    if "acc" in metrics:
        lines.append("ACC: mean ± standard deviation over the 10 folds (threshold chosen on the other 9).")
    if "params" in metrics:
        lines.append("Params: this profile's model sizes, in the paper's unit M = 1024².")
    higher = sorted({METRIC_NAMES.get(c.metric, c.metric) for c in spec.columns if c.higher_is_better})
    lower = sorted({METRIC_NAMES.get(c.metric, c.metric) for c in spec.columns if not c.higher_is_better})
    better = "; ".join(p for p in (f"higher {', '.join(higher)}" if higher else "",
                                   f"lower {', '.join(lower)}" if lower else "") if p)
    lines.append(f"Bold: best reproduced value per column ({better} is better; equal values at the printed "
                 "precision are all bold).")
    if any(c.metric in PER_IMAGE_METRICS for c in spec.columns):
        lines.append(f"{DAGGER}: JASRNet's difference to this model is significant (paired bootstrap on per-image "
                     "values matched by face name: the 95% interval of the mean difference excludes 0).")
    if tested:
        lines.append("Test set sizes: " + "; ".join(tested) + ".")
    return lines


# --- cost table ------------------------------------------------------------------------------------
COST_COLUMNS = (
    paper.Column("params", "Params (M)", "params", (), False, 2, unit="M"),
    paper.Column("gflops", "GFLOPs", "gflops", (), False, 2),
    paper.Column("train", "Train img/s", "train_img_per_s", (), True, 1),
    paper.Column("infer", "Infer img/s", "infer_img_per_s", (), True, 1),
)


def build_cost_table(costs: pd.DataFrame, profile: str) -> Table:
    """Parameters, FLOPs and throughput per model from ``benchmarks/bench_model_costs.py``'s CSV."""
    rows: list[str] = []
    cells: dict[tuple[str, str], Cell] = {}
    for _, rec in costs.iterrows():
        model = str(rec["model"])
        rows.append(model)
        learned = float(rec.get("parameters", 0) or 0) > 0
        values = {"params": float(rec["parameters"]) / PARAM_UNIT, "gflops": _num(rec.get("gflops_per_image")),
                  "train": _num(rec.get("train_img_per_s")), "infer": _num(rec.get("infer_img_per_s"))}
        for col in COST_COLUMNS:
            cell = Cell(model, col.key, model=model, metric=col.metric, mean=values[col.key], ranked=learned,
                        paper=paper.PAPER_PARAMS.get(model) if col.key == "params" else None)
            if col.key == "params" and cell.paper is None:
                cell.paper_note = "not reported in the paper"
            if cell.mean is None or (not learned and col.key in ("params", "train")):
                cell.mean = None
                cell.note = "no learned parameters" if not learned else "not measured"
            cells[(model, col.key)] = cell
    device = ", ".join(sorted({str(d) for d in costs.get("device", pd.Series(dtype=str)).dropna()})) or "unknown"
    threads = ", ".join(sorted({str(int(t)) for t in costs.get("threads", pd.Series(dtype=float)).dropna()}))
    batch = ", ".join(sorted({str(int(t)) for t in costs.get("batch", pd.Series(dtype=float)).dropna()}))
    caption = (f"Model costs at the registry's default (paper) sizes: parameters (M = 1024², paper's value beside "
               f"ours where reported), GFLOPs per image, training and inference throughput on {device}"
               + (f" ({threads} threads, batch {batch})" if threads else "") + ".")
    table = Table("costs", caption, COST_COLUMNS, rows, cells, with_paper=True, title="Costs")
    table.notes = [f"Written by benchmarks/bench_model_costs.py; FLOPs: "
                   f"{costs['flop_convention'].iloc[0] if 'flop_convention' in costs else '2 × MACs'}. "
                   f"Profile {profile} does not change these numbers (registry defaults, not the profile's widths)."]
    mark_best(table)
    table.legend = ["Bold: best per column among models with weights (fewer parameters and FLOPs, "
                    "higher throughput)."]
    return table


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --- plugin models (issue 27): rows that are not in the paper -------------------------------------
def _trained_plugin(results: Results, model: str) -> dict[str, str] | None:
    """The plugin record its training wrote into ``train.json`` (the distribution and version that trained it)."""
    from ..files import read_json

    for entry in (results.models.get(model) or {}).values():
        path = results.root / "train" / str(entry.get("run")) / "train.json"
        if entry.get("run") and path.is_file():
            record = read_json(path).get("plugin")
            if record:
                return record
    return None


def plugin_note(model: str, record: dict[str, str]) -> str:
    return (f"not in the paper: {model}, a plugin model from {record['distribution']} {record['version']} "
            f"(entry point {record.get('entry_point', '?')}), trained and evaluated here under this benchmark's "
            "protocol")


def plugin_rows(results: Results, params: dict[str, Any] | None = None) -> dict[int, list[paper.Row]]:
    """Paper table number → the rows of the plugin models (models of other packages, by entry point) in it.

    A plugin model joins the tables its profile entry lists (``models.NAME.tables``); without the profile,
    each of Tables 1–3 it was evaluated for. Its cells' paper note names its distribution and version.
    """
    from ..models import plugin_of

    entries = (params or {}).get("models") or {}
    rows: dict[int, list[paper.Row]] = {}
    for model in sorted(results.models):
        entry = entries.get(model) or {}
        installed = plugin_of(entry.get("arch", model))
        record = _trained_plugin(results, model) or (installed.as_dict() if installed else None)
        if record is None:
            continue
        if model in entries:
            numbers = [int(t) for t in entry.get("tables") or []]
        else:
            evaluated = set(results.models[model])
            numbers = [t.number for t in paper.TABLES if t.number <= 3
                       and any(split in evaluated for c in t.columns for split in c.splits)]
        for number in numbers:
            rows.setdefault(number, []).append(paper.Row(model, (model,), {}, not_in_paper=plugin_note(model, record)))
    return rows


def build_all(results: Results, costs: pd.DataFrame | None = None, params: dict[str, Any] | None = None) -> list[Table]:
    extra = plugin_rows(results, params)
    tables = [build_paper_table(results, spec, extra.get(spec.number, ())) for spec in paper.TABLES]
    if costs is not None and len(costs):
        tables.append(build_cost_table(costs, results.profile))
    return tables


def load_costs(path: str | Path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    missing = {"model", "parameters"} - set(frame.columns)
    if missing:
        log.warning("%s lacks columns %s: no cost table", path, sorted(missing))
        return None
    return frame


__all__ = ["Cell", "Results", "Table", "build_all", "build_cost_table", "build_paper_table", "choose_split",
           "load_costs"]
