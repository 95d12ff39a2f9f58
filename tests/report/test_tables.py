"""The paper's tables from a real (tiny) results tree: rows, paper values, best values, footnotes, formats, LaTeX."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from latex_checks import compile_problems, latex_rows, pdflatex_available, structure_problems

from jasrbench.metrics.statistics import paired_test
from jasrbench.report import paper, render, tables
from jasrbench.report.results import SIGNIFICANCE_RESAMPLES

PAPER_TABLES = [spec.name for spec in paper.TABLES]


def latex_footnotes(tex: str) -> dict[str, str]:
    """Footnote letter → text."""
    return dict(re.findall(r"^\\textsuperscript\{([a-z]+)\} (.*?)(?:\\\\)?$", tex, flags=re.M))


def markdown_rows(md: str) -> dict[str, list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")][2:]
    rows = {}
    for ln in lines:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def plain(cell: str) -> str:
    """A LaTeX or Markdown cell as the CSV's ``ours_display`` writes it."""
    cell = render.strip_latex(cell)
    cell = re.sub(r"<sup>([a-z]+)</sup>", r"[\1]", cell)
    return cell.replace("**", "").strip()


@pytest.fixture(scope="module")
def outputs(results_tree):
    out = {}
    for name in [*PAPER_TABLES, "costs"]:
        out[name] = {ext: (results_tree.tables / f"{name}.{ext}").read_text() for ext in ("tex", "md")}
        out[name]["csv"] = pd.read_csv(results_tree.tables / f"{name}.csv")
    return out


def test_every_row_of_the_papers_tables_in_every_format(outputs):
    for spec in paper.TABLES:
        tex, md, csv = outputs[spec.name]["tex"], outputs[spec.name]["md"], outputs[spec.name]["csv"]
        labels = [r.label for r in spec.rows]
        assert list(latex_rows(tex)) == [render._escape_latex(label) for label in labels]
        assert list(markdown_rows(md)) == labels
        assert list(dict.fromkeys(csv["row"])) == labels
        assert len(csv) == len(labels) * len(spec.columns)
    # Table 2's 64×64 row appears only when its model was trained.
    assert paper.TABLE2_64.label not in outputs["table2"]["md"]


def test_papers_values_beside_ours(outputs):
    for spec in paper.TABLES:
        rows, csv = latex_rows(outputs[spec.name]["tex"]), outputs[spec.name]["csv"]
        for row in spec.rows:
            cells = rows[render._escape_latex(row.label)]
            for j, col in enumerate(spec.columns):
                reported = row.reported.get(col.key)
                paper_cell = cells[2 * j + 1]
                record = csv[(csv["row"] == row.label) & (csv["key"] == col.key)].iloc[0]
                if reported is None:
                    assert paper_cell.startswith("---") and pd.isna(record["paper"])
                else:
                    assert float(paper_cell) == pytest.approx(reported) and record["paper"] == pytest.approx(reported)
    # e.g. JASRNet's 23.69 dB and 0.711 on 300W in Table 1, its 4.60 NME on 300W common in Table 2.
    t1 = latex_rows(outputs["table1"]["tex"])["JASRNet"]
    assert t1[1] == "23.69" and t1[3] == "0.711"
    assert latex_rows(outputs["table2"]["tex"])["JASRNet"][1] == "4.60"
    assert latex_rows(outputs["table2"]["tex"])["SuperFAN"][7] == "3.774"  # the paper's 3 decimals kept


def test_ours_are_the_collected_means_with_their_interval(outputs, results_tree):
    metrics = json.loads((results_tree.results / "metrics.json").read_text())["models"]
    csv = outputs["table1"]["csv"]
    rec = csv[(csv["row"] == "JASRNet") & (csv["key"] == "300w_psnr")].iloc[0]
    m = metrics["jasrnet"]["300w/common"]["psnr"]
    assert rec["split"] == "300w/common" and rec["ours"] == pytest.approx(m["mean"], rel=1e-5)
    assert rec["half_width"] == pytest.approx((m["ci_high"] - m["ci_low"]) / 2, rel=1e-4)
    assert rec["ours_display"].startswith(f"{m['mean']:.2f} ± {(m['ci_high'] - m['ci_low']) / 2:.2f}")
    # Accuracy: ± is the standard deviation over the 10 folds; HR comes from bicubic's acc_hr.
    t3 = outputs["table3"]["csv"]
    hr = t3[(t3["row"] == "HR") & (t3["key"] == "acc")].iloc[0]
    acc_hr = metrics["bicubic"]["lfw/test"]["acc_hr"]
    assert hr["metric"] == "acc_hr" and hr["ours"] == pytest.approx(acc_hr["mean"])
    assert hr["half_width"] == pytest.approx(acc_hr["std"]) and not hr["best"]  # the reference is not ranked
    # Parameters in the paper's unit (1024²).
    params = t3[(t3["row"] == "JASRNet") & (t3["key"] == "params")].iloc[0]
    assert params["ours"] == pytest.approx(metrics["jasrnet"]["300w/common"]["params"] / 1024**2, rel=1e-5)


def test_best_value_bold_per_column_direction_aware(outputs):
    checked = 0
    for spec in paper.TABLES:
        csv, tex, md = outputs[spec.name]["csv"], outputs[spec.name]["tex"], outputs[spec.name]["md"]
        rows_tex, rows_md = latex_rows(tex), markdown_rows(md)
        for j, col in enumerate(spec.columns):
            cells = csv[(csv["key"] == col.key) & csv["ours"].notna()]
            # Not ranked: reference rows (HR), the no-learning floor, and values flagged "did not learn".
            unranked = [r.label for r in (*spec.rows, *spec.optional_rows) if r.reference or r.floor]
            ranked = cells[~cells["row"].isin(unranked) & cells["flag"].isna()]
            if ranked.empty:
                continue
            shown = ranked["ours"].round(col.decimals)
            best = shown.max() if col.higher_is_better else shown.min()
            for (_, rec), value in zip(ranked.iterrows(), shown, strict=True):
                is_best = value == best
                assert bool(rec["best"]) == is_best, (spec.name, rec["row"], col.key)
                assert rows_tex[render._escape_latex(rec["row"])][2 * j].startswith("\\textbf{") == is_best
                assert rows_md[rec["row"]][2 * j].startswith("**") == is_best
                checked += 1
    assert checked >= 10
    # Table 4: lower NME wins, whichever of BL and JASRNet it is.
    t4 = outputs["table4"]["csv"]
    nme = t4[t4["key"] == "nme"].set_index("row")["ours"]
    assert t4[(t4["key"] == "nme") & t4["best"]]["row"].tolist() == [nme.round(2).idxmin()]


def test_cells_that_cannot_be_computed_say_why(outputs, results_tree):
    metrics = json.loads((results_tree.results / "metrics.json").read_text())["models"]
    reason = metrics["bicubic"]["300w/challenge"]["reason"]
    t2 = outputs["table2"]["tex"]
    notes, rows = latex_footnotes(t2), latex_rows(t2)
    for label in ("SuperFAN", "FSRNet", "CPM+SBR (bicubic)", "JASRNet"):
        challenge = rows[label][2]
        letter = re.fullmatch(r"---\\textsuperscript\{([a-z])\}", challenge).group(1)
        if label == "JASRNet":  # evaluated here, but 300W challenge cannot be computed without iBUG
            assert "300w/challenge is unavailable" in notes[letter] and render._escape_latex(reason) in notes[letter]
    superfan = re.fullmatch(r"---\\textsuperscript\{([a-z])\}", rows["SuperFAN"][0]).group(1)
    assert "not part of profile smoke" in notes[superfan]
    aflw = re.fullmatch(r"---\\textsuperscript\{([a-z])\}", rows["JASRNet"][6]).group(1)
    assert "no model was evaluated on aflw/test" in notes[aflw]
    # Table 1: the paper's 300W is the full set; here the common subset stands in, noted on the header.
    t1 = outputs["table1"]["tex"]
    header = re.search(r"\\multicolumn\{2\}\{c\}\{300W PSNR\\textsuperscript\{([a-z])\}\}", t1).group(1)
    assert "300w/common" in latex_footnotes(t1)[header] and "300w/full" in latex_footnotes(t1)[header]
    # Table 3: the LFW stand-in is named in the caption and in a footnote; HR has no PSNR of its own.
    t3 = outputs["table3"]["tex"]
    stand_in = render._escape_latex(results_tree.params["data"]["datasets"]["lfw"]["stand_in"])
    assert stand_in in t3.split("\\caption{", 1)[1].split("}\n", 1)[0] and t3.count(stand_in) >= 2
    hr_psnr = re.fullmatch(r"---\\textsuperscript\{([a-z])\}", latex_rows(t3)["HR"][2]).group(1)
    assert latex_footnotes(t3)[hr_psnr] == "not applicable to the HR reference"
    # Every "—" cell of every table carries a note letter that its footnotes explain.
    for name in PAPER_TABLES:
        csv = outputs[name]["csv"]
        assert csv[csv["ours"].isna()]["note"].notna().all(), name
        tex = outputs[name]["tex"]
        used = set(re.findall(r"---\\textsuperscript\{([a-z])\}", tex))
        assert used <= set(latex_footnotes(tex)), name


def test_csv_and_markdown_agree_with_latex(outputs):
    for name in [*PAPER_TABLES, "costs"]:
        csv, rows_tex, rows_md = outputs[name]["csv"], latex_rows(outputs[name]["tex"]), markdown_rows(outputs[name]["md"])
        keys = list(dict.fromkeys(csv["key"]))
        for _, rec in csv.iterrows():
            j = keys.index(rec["key"])
            tex_cell = plain(rows_tex[render._escape_latex(rec["row"])][2 * j])
            md_cell = plain(rows_md[rec["row"]][2 * j])
            assert tex_cell == md_cell == rec["ours_display"], (name, rec["row"], rec["key"])
            if pd.notna(rec["ours"]):
                number = float(re.match(r"-?[0-9.]+", tex_cell).group())
                assert number == pytest.approx(round(rec["ours"], int(rec["decimals"])), abs=1e-9)
            paper_tex = rows_tex[render._escape_latex(rec["row"])][2 * j + 1]
            paper_md = rows_md[rec["row"]][2 * j + 1]
            assert plain(paper_tex) == plain(paper_md)


def test_significance_marks_the_paired_test_on_per_image_values(outputs, results_tree):
    t1 = outputs["table1"]["csv"]
    rec = t1[(t1["row"] == "Bicubic") & (t1["key"] == "300w_psnr")].iloc[0]
    per = {m: pd.read_csv(results_tree.results / "eval" / f"{m}-300w" / "300w_common" / "per_image.csv")
           .set_index("name")["psnr"] for m in ("jasrnet", "bicubic")}
    names = sorted(set(per["jasrnet"].index) & set(per["bicubic"].index))
    expected = paired_test(per["jasrnet"][names].to_numpy(), per["bicubic"][names].to_numpy(), seed=0,
                           resamples=SIGNIFICANCE_RESAMPLES)
    assert rec["vs"] == "jasrnet" and rec["diff"] == pytest.approx(expected["mean_diff"], rel=1e-5)
    assert bool(rec["significant"]) == expected["significant"]
    assert rec["ours_display"].endswith("†") == expected["significant"]
    # Every dagger in every table is a significant paired test, and JASRNet's own cells carry none.
    for name in PAPER_TABLES:
        csv = outputs[name]["csv"]
        marked = csv["ours_display"].str.contains("†", regex=False)
        assert (csv.loc[marked, "significant"] == True).all()  # noqa: E712
        assert not marked[csv["model"] == "jasrnet"].any()
        assert "†" in outputs[name]["md"] or not marked.any()


def test_cost_table_from_the_benchmark_csv(outputs, results_tree):
    bench = pd.read_csv(results_tree.costs).set_index("model")
    csv = outputs["costs"]["csv"]
    assert list(dict.fromkeys(csv["row"])) == ["bicubic", "edsr"]
    params = csv[(csv["row"] == "edsr") & (csv["key"] == "params")].iloc[0]
    assert params["ours"] == pytest.approx(bench.loc["edsr", "parameters"] / 1024**2, rel=1e-5)
    gflops = csv[(csv["row"] == "edsr") & (csv["key"] == "gflops")].iloc[0]
    assert gflops["ours"] == pytest.approx(bench.loc["edsr", "gflops_per_image"], rel=1e-5) and gflops["best"]
    bicubic = csv[(csv["row"] == "bicubic") & (csv["key"] == "params")].iloc[0]
    assert pd.isna(bicubic["ours"]) and bicubic["note"] == "no learned parameters"


def test_latex_tables_compile_or_are_well_formed(results_tree, tmp_path):
    """Structure always; and, where pdflatex is installed, each table compiled in a minimal booktabs document."""
    specs = {spec.name: spec for spec in paper.TABLES}
    for name in [*PAPER_TABLES, "costs"]:
        tex = (results_tree.tables / f"{name}.tex").read_text()
        assert structure_problems(tex, specs.get(name)) == [], name
    if not pdflatex_available():
        pytest.skip("pdflatex not installed: structure checked, compilation not")  # see README (tests and CI)
    for name in [*PAPER_TABLES, "costs"]:
        assert compile_problems(results_tree.tables / f"{name}.tex", tmp_path) is None


def test_malformed_latex_is_caught_by_the_structure_check(results_tree):
    tex = (results_tree.tables / "table1.tex").read_text()
    spec = paper.TABLES[0]
    assert structure_problems(tex.replace("\\bottomrule\n", ""), spec)
    assert structure_problems(tex.replace("JASRNet &", "JASRNet-x &"), spec)
    assert structure_problems(tex.replace("\\end{tabular}", ""), spec)


# --- table logic on hand-made results (no training) -----------------------------------------------------
def _results(tmp_path, models: dict) -> tables.Results:
    (tmp_path / "metrics.json").write_text(json.dumps({"profile": "unit", "models": models}))
    return tables.Results(tmp_path)


def _m(mean: float, hw: float = 0.1, n: int = 10) -> dict:
    return {"mean": mean, "ci_low": mean - hw, "ci_high": mean + hw, "n": n}


def test_full_300w_preferred_when_available(tmp_path):
    results = _results(tmp_path, {
        "jasrnet": {"300w/full": {"available": True, "params": 5, "psnr": _m(23.0), "ssim": _m(0.7, 0.01)},
                    "300w/common": {"available": True, "params": 5, "psnr": _m(24.0), "ssim": _m(0.72, 0.01)}},
        "bicubic": {"300w/full": {"available": True, "params": 0, "psnr": _m(21.0), "ssim": _m(0.6, 0.01)}}})
    t1 = tables.build_paper_table(results, paper.TABLES[0])
    assert t1.cell("JASRNet", "300w_psnr").split == "300w/full" and t1.cell("JASRNet", "300w_psnr").mean == 23.0
    assert "300w_psnr" not in t1.column_notes
    assert t1.cell("JASRNet", "300w_psnr").best and not t1.cell("Bicubic", "300w_psnr").best


def test_lower_nme_is_best_and_ties_are_all_bold(tmp_path):
    results = _results(tmp_path, {
        "jasrnet": {"300w/common": {"available": True, "params": 5, "nme": _m(5.004)}},
        "cpm": {"300w/common": {"available": True, "params": 3, "nme": _m(4.996)}},
        "superfan": {"300w/common": {"available": True, "params": 3, "nme": _m(6.0)}}})
    t2 = tables.build_paper_table(results, paper.TABLES[1])
    best = {r for r in t2.rows if t2.cell(r, "common").best}
    assert best == {"JASRNet", "CPM+SBR (bicubic)"}  # 5.00 and 5.00 at the printed precision
    assert "\\textbf{5.00" in render.to_latex(t2)
    assert np.isclose(t2.cell("SuperFAN", "common").mean, 6.0) and not t2.cell("SuperFAN", "common").best
