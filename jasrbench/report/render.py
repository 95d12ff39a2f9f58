"""A table (:class:`.tables.Table`) as LaTeX, Markdown and long-format CSV, written atomically.

LaTeX comes from pandas' ``Styler.to_latex`` (booktabs rules, ``\\textbf`` for the best
values), with the footnotes inside the ``table`` environment; the CSV has one row per cell
with every number behind the printed ones (exact interval, paired test, notes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_path, atomic_write_text
from . import paper
from .tables import DAGGER, DASH, Cell, Table


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


def strip_latex(text: str) -> str:
    """Plain text of a rendered LaTeX cell (tests compare it with the CSV)."""
    text = text.replace(r"$\pm$", "±").replace(r"$^\dagger$", DAGGER).replace("---", DASH)
    text = re.sub(r"\\textsuperscript\{([^}]*)\}", r"[\1]", text)
    text = re.sub(r"\\textbf\{(.*)\}", r"\1", text)
    return text.strip()


__all__ = ["LATEX", "MARKDOWN", "PLAIN", "strip_latex", "to_latex", "to_markdown", "to_records", "write_table"]
