"""LaTeX checks shared by the report tests and the smoke-DAG test: structure, and compilation with pdflatex."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from jasrbench.report import paper, render


def latex_rows(tex: str) -> dict[str, list[str]]:
    """Row label → cells of the tabular body (between \\midrule and \\bottomrule)."""
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    rows = {}
    for line in body.strip().splitlines():
        cells = [c.strip() for c in line.rstrip().removesuffix("\\\\").split(" & ")]
        rows[cells[0]] = cells[1:]
    return rows


def structure_problems(tex: str, spec: paper.PaperTable | None) -> list[str]:
    problems = []
    for env in ("table", "tabular"):
        if tex.count(f"\\begin{{{env}}}") != 1 or tex.count(f"\\end{{{env}}}") != 1:
            problems.append(f"{env} environment not opened and closed once")
    positions = [tex.find(m) for m in ("\\begin{table}", "\\begin{tabular}", "\\end{tabular}", "\\end{table}")]
    if -1 in positions or positions != sorted(positions):
        problems.append("environments missing or out of order")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        if tex.count(rule) != 1:
            problems.append(f"{rule} ×{tex.count(rule)}")
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            problems.append("unbalanced braces")
            break
    if depth:
        problems.append("unbalanced braces")
    if tex.count("$") % 2:
        problems.append("unbalanced $")
    n_cols = len(re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1))
    for label, cells in latex_rows(tex).items():
        if len(cells) + 1 != n_cols:
            problems.append(f"row {label}: {len(cells) + 1} cells for {n_cols} columns")
    if spec is not None:
        missing = [r.label for r in spec.rows if render._escape_latex(r.label) not in latex_rows(tex)]
        if missing:
            problems.append(f"rows missing: {missing}")
    return problems


def compile_problems(tex_file: Path, workdir: Path) -> str | None:
    """None if ``tex_file`` compiles in a minimal booktabs document, else pdflatex's complaint.

    Call only where ``shutil.which("pdflatex")`` finds it.
    """
    name = tex_file.stem
    doc = workdir / f"{name}_doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n"
                   "\\usepackage[margin=1cm,landscape]{geometry}\n\\begin{document}\n"
                   f"\\input{{{tex_file.with_suffix('')}}}\n\\end{{document}}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=workdir,
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        return f"{name}.tex does not compile:\n{run.stdout[-3000:]}"
    log = (workdir / f"{name}_doc.log").read_text(errors="replace")
    if "Missing character" in log or "Undefined control sequence" in log:
        return f"{name}.tex: missing characters or undefined control sequences"
    if (workdir / f"{name}_doc.pdf").stat().st_size <= 1000:
        return f"{name}.tex: empty PDF"
    return None


def pdflatex_available() -> bool:
    return shutil.which("pdflatex") is not None
