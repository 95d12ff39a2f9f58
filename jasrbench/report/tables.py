"""The paper's Tables 1–5 (and a cost table) from collected results, as LaTeX, CSV and Markdown.

Each table is a grid of :class:`Cell` objects (rows = the paper's rows from
:mod:`.paper`, columns = its metrics) filled from ``results/<profile>``:

- **ours**: the reproduced mean and its 95% percentile-bootstrap interval over
  the test images, printed as ``mean ± half-width`` (half the interval's
  width; the exact ``[ci_low, ci_high]`` are in the CSV). Verification
  accuracy has no per-image values: its ``±`` is the standard deviation over
  the 10 folds, as in the paper. Parameters are in the paper's unit (1024²).
- **paper**: the value Yin et al. (AAAI 2020) report, beside ours.
- **best** (bold): the best reproduced value of each column, direction-aware
  (higher PSNR/SSIM/ACC, lower NME and parameters), compared at the printed
  precision so that ties are all bold; reference rows (HR) are not ranked.
- **†**: JASRNet's difference to this model is significant — a paired test
  (:func:`jasrbench.metrics.statistics.paired_test`) on the per-image values
  of both models (``per_image.csv``, matched by face name): the 95% paired
  bootstrap interval of the mean difference excludes 0.
- **—** with a footnote letter: a cell that cannot be computed, and why (a
  split unavailable with the data at hand and its reason, a model or dataset
  not in this profile, a metric not defined for the model, a value the paper
  does not report).

LaTeX comes from pandas' ``Styler.to_latex`` (booktabs rules, ``\\textbf`` for
the best values); the footnote block is appended after the tabular, inside the
``table`` environment. The CSV is long-format, one row per cell, with every
number behind the printed ones.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_path, atomic_write_text, read_json
from ..metrics.statistics import paired_test
from . import paper

log = logging.getLogger(__name__)

PER_IMAGE_METRICS = ("psnr", "ssim", "nme")  # metrics with per-image values (paired tests possible)
SIGNIFICANCE_RESAMPLES = 2000
DAGGER = "†"
DASH = "—"
PARAM_UNIT = 1024**2
DATASET_NAMES = {"300w": "300W", "helen": "HELEN", "aflw": "AFLW", "lfw": "LFW"}


# --- the results of one profile --------------------------------------------------------------------
class Results:
    """``results/<profile>``: ``metrics.json`` (from ``collect``) and the per-image values under ``eval/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.metrics = read_json(self.root / "metrics.json")
        self.profile: str = str(self.metrics.get("profile", self.root.name))
        self.models: dict[str, dict[str, Any]] = self.metrics.get("models", {})
        self.stand_in: dict[str, str] = self.metrics.get("stand_in", {}) or {}
        self.protocols: set[str] = set()  # degradation protocols the evaluations were made under
        self._eval_dirs = self._scan_eval()
        self._per_image: dict[Path, pd.DataFrame] = {}

    def _scan_eval(self) -> dict[tuple[str, str], Path]:
        """(model, split) → its evaluation folder (where ``per_image.csv`` lives)."""
        found: dict[tuple[str, str], Path] = {}
        for path in sorted((self.root / "eval").glob("*/*/summary.json")):
            summary = read_json(path)
            key = (summary.get("model"), summary.get("split"))
            entry = self.entry(*key)
            if entry is None:
                continue  # an evaluation collect did not merge (not in the profile's DAG)
            if entry.get("run") is not None:  # eval/<run>/<split>/: the run the table shows (collect's choice)
                if path.parent.parent.name != entry["run"]:
                    continue
            elif key in found and summary.get("trained_on") != entry.get("trained_on"):
                continue  # the same model trained on another dataset: metrics.json holds the other one
            found[key] = path.parent
            if summary.get("protocol"):
                self.protocols.add(str(summary["protocol"]))
        return found

    def has_model(self, model: str) -> bool:
        return model in self.models

    def entry(self, model: str, split: str) -> dict[str, Any] | None:
        return (self.models.get(model) or {}).get(split)

    def splits(self) -> set[str]:
        return {split for entries in self.models.values() for split in entries}

    def eval_dir(self, model: str, split: str) -> Path | None:
        return self._eval_dirs.get((model, split))

    def per_image(self, model: str, split: str, metric: str) -> pd.Series | None:
        """Per-image values of ``metric`` indexed by face name, or None when not recorded."""
        folder = self.eval_dir(model, split)
        if folder is None or not (folder / "per_image.csv").is_file():
            return None
        if folder not in self._per_image:
            self._per_image[folder] = pd.read_csv(folder / "per_image.csv")
        frame = self._per_image[folder]
        if metric not in frame.columns or "name" not in frame.columns:
            return None
        return frame.set_index("name")[metric]

    def faces(self, split: str) -> int | None:
        """Number of test faces behind the split's per-image values (the largest over models)."""
        return self._count(split, PER_IMAGE_METRICS)

    def pairs(self, split: str) -> int | None:
        """Number of verification pairs behind the split's accuracy."""
        return self._count(split, ("acc",))

    def _count(self, split: str, metrics: tuple[str, ...]) -> int | None:
        counts = [int(v["n"]) for entries in self.models.values() for k, v in (entries.get(split) or {}).items()
                  if k in metrics and isinstance(v, dict) and v.get("n") is not None]
        return max(counts) if counts else None


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
        if any((results.entry(m, split) or {}).get("available") for m in models):
            chosen = split
            break
    if chosen is None:
        for split in column.splits:
            if any(results.entry(m, split) is not None for m in models):
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
        entry = results.entry(m, split)
        if entry is not None and not entry.get("available", True):
            return f"is unavailable here ({entry.get('reason', 'unavailable')})"
    return f"was not evaluated in profile {results.profile}"


def fill_cell(results: Results, row: paper.Row, column: paper.Column, split: str | None) -> Cell:
    cell = Cell(row.label, column.key, split=split, metric=row.metric_override.get(column.metric, column.metric),
                paper=row.reported.get(column.key), ranked=not (row.reference or row.floor))
    if cell.paper is None:
        cell.paper_note = ("not in the paper: the no-learning floor of this benchmark" if row.floor
                           else "not reported in the paper")
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
        entries = [e for e in (results.models.get(model) or {}).values() if e.get("params") is not None]
        count = entries[0]["params"] if entries else None
        if not count:
            cell.note = "no learned parameters" if count == 0 else "parameter count not recorded"
            return cell
        cell.mean = count / PARAM_UNIT
        return cell
    entry = results.entry(model, split) if split else None
    if entry is None:
        others = [results.entry(m, split) for m in results.models if results.entry(m, split) is not None]
        unavailable = [e for e in others if not e.get("available", True)]
        if unavailable:  # the split cannot be computed with the data at hand: say why, not "not evaluated"
            cell.note = _unavailable(split, unavailable[0])
        elif others:
            cell.note = f"not computed: this model was not evaluated on {split} in profile {results.profile}"
        else:
            cell.note = f"not computed: no model was evaluated on {split} in profile {results.profile}"
        return cell
    if not entry.get("available", True):
        cell.note = _unavailable(split, entry)
        return cell
    value = entry.get(cell.metric)
    if not isinstance(value, dict) or "mean" not in value:
        cell.note = f"not defined: the model {_NOT_DEFINED.get(column.metric, f'reports no {cell.metric}')}"
        return cell
    cell.mean = float(value["mean"])
    cell.ci_low = _float(value.get("ci_low"))
    cell.ci_high = _float(value.get("ci_high"))
    cell.std = _float(value.get("std"))
    cell.n = int(value["n"]) if value.get("n") is not None else None
    return cell


def _unavailable(split: str, entry: dict[str, Any]) -> str:
    return f"not computed: {split} is unavailable ({entry.get('reason') or 'no reason given'})"


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


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


def mark_significance(table: Table, results: Results, reference: str = paper.REFERENCE_MODEL,
                      resamples: int = SIGNIFICANCE_RESAMPLES, seed: int = 0) -> None:
    """Paired test of the reference model (JASRNet) against every other model of each per-image column."""
    for col in table.columns:
        if col.metric not in PER_IMAGE_METRICS:
            continue
        for row in table.rows:
            cell = table.cell(row, col.key)
            if cell.mean is None or cell.model in (None, reference) or not cell.ranked or cell.split is None:
                continue
            ref = results.per_image(reference, cell.split, cell.metric)
            other = results.per_image(cell.model, cell.split, cell.metric)
            if ref is None or other is None:
                continue
            joined = pd.concat([ref.rename("ref"), other.rename("other")], axis=1, join="inner").dropna()
            if len(joined) < 2:
                continue
            result = paired_test(joined["ref"].to_numpy(), joined["other"].to_numpy(), seed=seed, resamples=resamples)
            cell.test = {"against": reference, **result}


def build_paper_table(results: Results, spec: paper.PaperTable) -> Table:
    rows = list(spec.rows) + [r for r in spec.optional_rows if any(results.has_model(m) for m in r.models)]
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
    flags = training_health(results)
    for cell in cells.values():
        if cell.mean is not None and cell.ranked:
            cell.flag = flags.get((cell.model, cell.split, cell.metric))
    mark_best(table)
    mark_significance(table, results)
    table.legend = _legend(table, spec, tested)
    return table


_METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "nme": "NME", "acc": "ACC", "params": "Params",
                 "psnr_border8": "PSNR", "ssim_border8": "SSIM"}


# --- training health --------------------------------------------------------------------------------
HEALTH_LABEL = "did not learn in this profile"
# metric → (the no-learning reference model, True if a learned model must be above it)
HEALTH_REFERENCES = {"psnr": ("bicubic", True), "nme": (paper.FLOOR_MODEL, False)}


def training_health(results: Results) -> dict[tuple[str, str, str], str]:
    """(model, split, metric) → why the model did not learn, for every value no better than no learning.

    A super-resolution model whose mean PSNR is below bicubic's on the same split, or a landmark model
    whose mean NME is not below the mean-shape floor's (``mean_shape``: the mean training shape, whatever
    the face), has learned nothing useful in this profile's schedule. Where the reference model was not
    evaluated on the split, nothing can be said and nothing is flagged.
    """
    flags: dict[tuple[str, str, str], str] = {}
    for model, entries in results.models.items():
        for split, entry in entries.items():
            if not entry.get("available", True):
                continue
            for metric, (reference, higher) in HEALTH_REFERENCES.items():
                value = (entry.get(metric) or {}).get("mean") if isinstance(entry.get(metric), dict) else None
                ref_entry = results.entry(reference, split) or {}
                ref = (ref_entry.get(metric) or {}).get("mean") if isinstance(ref_entry.get(metric), dict) else None
                if model == reference or value is None or ref is None:
                    continue
                if (value < ref) if higher else (value >= ref):
                    name = _METRIC_NAMES.get(metric, metric)
                    unit = " dB" if metric == "psnr" else ""
                    if higher:
                        why = f"its {name} is below bicubic's ({ref:.2f}{unit}) on {split}"
                    else:
                        why = f"its {name} is not below the no-learning mean-shape floor ({ref:.2f}) on {split}"
                    flags[(model, split, metric)] = f"{HEALTH_LABEL}: {why}"
    return flags


def health_report(results: Results) -> list[dict[str, Any]]:
    """The flagged values as records (model, split, metric, value, reference, why), sorted."""
    out = []
    for (model, split, metric), why in sorted(training_health(results).items()):
        reference = HEALTH_REFERENCES[metric][0]
        out.append({"model": model, "split": split, "metric": metric,
                    "value": float(results.entry(model, split)[metric]["mean"]),
                    "reference_model": reference,
                    "reference": float(results.entry(reference, split)[metric]["mean"]), "why": why})
    return out


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
    higher = sorted({_METRIC_NAMES.get(c.metric, c.metric) for c in spec.columns if c.higher_is_better})
    lower = sorted({_METRIC_NAMES.get(c.metric, c.metric) for c in spec.columns if not c.higher_is_better})
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


# --- rendering -------------------------------------------------------------------------------------
def _fmt(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}"


def _escape_latex(text: str) -> str:
    """Escape LaTeX's special characters in plain text (footnotes, captions)."""
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "×": r"$\times$", "±": r"$\pm$", "²": r"$^2$", "→": r"$\rightarrow$", "–": "--", "—": "---",
            "†": r"$^\dagger$", "≤": r"$\leq$", "≥": r"$\geq$"}
    return "".join(repl.get(ch, ch) for ch in text)


@dataclass(frozen=True)
class _Style:
    """How one output format writes a cell's parts."""

    pm: str
    dash: str
    dagger: str
    mark: Callable[[str], str]
    escape: Callable[[str], str]


LATEX = _Style(r"$\pm$", "---", r"$^\dagger$", lambda m: rf"\textsuperscript{{{m}}}", _escape_latex)
MARKDOWN = _Style("±", DASH, DAGGER, lambda m: f"<sup>{m}</sup>", lambda s: s.replace("|", r"\|"))
PLAIN = _Style("±", DASH, DAGGER, lambda m: f"[{m}]", lambda s: s)


def render_ours(cell: Cell, col: paper.Column, style: _Style, marks: dict[str, str]) -> str:
    if cell.mean is None:
        return style.dash + (style.mark(marks[cell.note]) if cell.note in marks else "")
    text = _fmt(cell.mean, col.decimals)
    hw = cell.half_width
    if hw is not None and col.metric != "params":
        text += f" {style.pm} {_fmt(hw, col.decimals)}"
    if cell.significant:
        text += style.dagger
    if cell.flag:  # a model that did not learn is never shown as a plain number
        text += style.mark(marks[cell.flag])
    return text


def render_paper(cell: Cell, col: paper.Column, style: _Style, marks: dict[str, str]) -> str:
    if cell.paper is None:
        return style.dash + (style.mark(marks[cell.paper_note]) if cell.paper_note in marks else "")
    return _fmt(cell.paper, max(col.decimals, _decimals(cell.paper)))


def _decimals(v: float) -> int:
    """Decimals the paper printed (3.774 keeps its 3)."""
    text = f"{v:.6f}".rstrip("0")
    return len(text.partition(".")[2])


def _headers(table: Table, style: _Style, marks: dict[str, str]) -> list[str]:
    out = []
    for col in table.columns:
        label = style.escape(col.label)
        if col.key in table.column_notes:
            label += style.mark(marks[table.column_notes[col.key]])
        out.append(label)
    return out


def display_frame(table: Table, style: _Style, bold: Callable[[str], str] | None = None) -> pd.DataFrame:
    """Display strings (one column per ours/paper) with MultiIndex columns (header, ours/paper)."""
    marks = table.marks()
    headers = _headers(table, style, marks)
    data: dict[tuple[str, str], list[str]] = {}
    for col, header in zip(table.columns, headers, strict=True):
        ours = []
        for row in table.rows:
            cell = table.cell(row, col.key)
            text = render_ours(cell, col, style, marks)
            ours.append(bold(text) if bold and cell.best else text)
        data[(header, "ours")] = ours
        if table.with_paper:
            data[(header, "paper")] = [render_paper(table.cell(r, col.key), col, style, marks) for r in table.rows]
    frame = pd.DataFrame(data, index=pd.Index([style.escape(r) for r in table.rows]))
    frame.columns = pd.MultiIndex.from_tuples(list(data))
    return frame


def footnotes(table: Table, style: _Style) -> list[str]:
    lines = [f"{style.mark(letter)} {style.escape(text)}" for text, letter in table.marks().items()]
    return lines + [style.escape(t) for t in table.notes] + [style.escape(t) for t in table.legend]


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` (booktabs); ``\\usepackage{booktabs}`` in the preamble."""
    frame = display_frame(table, LATEX)
    width = 2 if table.with_paper else 1  # (ours, paper) per column
    css = np.full(frame.shape, "", dtype=object)
    for i, row in enumerate(table.rows):
        for j, col in enumerate(table.columns):
            if table.cell(row, col.key).best:
                css[i, j * width] = "textbf: --rwrap;"  # Styler's LaTeX: \textbf{…} around the cell
    styles = pd.DataFrame(css, index=frame.index, columns=frame.columns)
    styler = frame.style.apply(lambda _: styles, axis=None)
    tex = styler.to_latex(
        caption=_escape_latex(table.caption),
        label=f"tab:jasrbench-{table.name}",
        position="t",
        position_float="centering",
        hrules=True,
        column_format="l" + "r" * frame.shape[1],
        multicol_align="c",
        environment="table",
    )
    notes = footnotes(table, LATEX)
    block = "\\par\\smallskip\n{\\footnotesize\\raggedright\n" + "\\\\\n".join(notes) + "\\par}\n" if notes else ""
    head, sep, tail = tex.rpartition("\\end{tabular}\n")
    return head + sep + block + tail


def to_markdown(table: Table) -> str:
    frame = display_frame(table, MARKDOWN, bold=lambda s: f"**{s}**")
    frame.columns = [f"{a} ({b})" for a, b in frame.columns]
    body = frame.to_markdown(colalign=["left"] + ["right"] * frame.shape[1], disable_numparse=True)
    notes = footnotes(table, MARKDOWN)
    title = f"{table.title}. " if table.title else ""
    return f"**{title}{table.caption}**\n\n{body}\n\n" + "".join(f"- {n}\n" for n in notes)


def to_records(table: Table) -> pd.DataFrame:
    """Long format: one row per cell, every number behind the printed ones."""
    marks = table.marks()
    recs = []
    for row in table.rows:
        for col in table.columns:
            c = table.cell(row, col.key)
            t = c.test or {}
            recs.append({
                "table": table.name, "row": row, "column": col.label, "key": col.key, "model": c.model,
                "split": c.split, "metric": c.metric, "ours": c.mean, "ci_low": c.ci_low, "ci_high": c.ci_high,
                "half_width": c.half_width if col.metric != "params" else None, "std": c.std, "n": c.n,
                "paper": c.paper, "best": c.best, "higher_is_better": col.higher_is_better,
                "decimals": col.decimals, "ours_display": render_ours(c, col, PLAIN, marks),
                "vs": t.get("against"), "diff": t.get("mean_diff"), "diff_ci_low": t.get("ci_low"),
                "diff_ci_high": t.get("ci_high"), "p_bootstrap": t.get("p_bootstrap"),
                "p_wilcoxon": t.get("p_wilcoxon"), "significant": c.significant if c.test else None,
                "note": c.note, "flag": c.flag, "paper_note": c.paper_note,
            })
    return pd.DataFrame(recs)


def write_table(table: Table, out_dir: str | Path) -> dict[str, Path]:
    """``<out>/<name>.{tex,csv,md}``, each written atomically."""
    out_dir = Path(out_dir)
    paths = {ext: out_dir / f"{table.name}.{ext}" for ext in ("tex", "csv", "md")}
    atomic_write_text(paths["tex"], to_latex(table))
    atomic_write_text(paths["md"], to_markdown(table))
    with atomic_path(paths["csv"], suffix=".csv") as tmp:
        to_records(table).to_csv(tmp, index=False, float_format="%.6g")
    return paths


def build_all(results: Results, costs: pd.DataFrame | None = None) -> list[Table]:
    tables = [build_paper_table(results, spec) for spec in paper.TABLES]
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


def strip_latex(text: str) -> str:
    """Plain text of a rendered LaTeX cell (tests compare it with the CSV)."""
    text = text.replace(r"$\pm$", "±").replace(r"$^\dagger$", DAGGER).replace("---", DASH)
    text = re.sub(r"\\textsuperscript\{([^}]*)\}", r"[\1]", text)
    text = re.sub(r"\\textbf\{(.*)\}", r"\1", text)
    return text.strip()


__all__ = ["Cell", "Results", "Table", "build_all", "build_cost_table", "build_paper_table", "load_costs",
           "to_latex", "to_markdown", "to_records", "write_table"]
