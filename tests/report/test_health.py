"""The training-health check: values no better than no learning are footnoted, never ranked, and listed in the README."""

from __future__ import annotations

import json

from jasrbench.report import paper, readme, render, tables
from jasrbench.report.results import HEALTH_LABEL, training_health
from jasrbench.report.build import Report

COMMON = "300w/common"


def _m(mean: float, hw: float = 0.1, n: int = 554) -> dict:
    return {"mean": mean, "ci_low": mean - hw, "ci_high": mean + hw, "n": n}


def _results(tmp_path, models: dict) -> tables.Results:
    (tmp_path / "metrics.json").write_text(json.dumps({"profile": "unit", "models": models}))
    return tables.Results(tmp_path)


def _entry(**metrics) -> dict:
    return {COMMON: {"available": True, "params": 5, **{k: _m(v) for k, v in metrics.items()}}}


MODELS = {
    "bicubic": _entry(psnr=21.0, ssim=0.60),
    "mean_shape": {COMMON: {"available": True, "params": 136, "nme": _m(20.0)}},
    "jasrnet": _entry(psnr=23.0, ssim=0.70, nme=12.0),
    "superfan": _entry(psnr=14.0, ssim=0.13, nme=27.0),  # collapsed SR, NME above the floor
    "fsrnet": _entry(psnr=23.8, ssim=0.65, nme=20.0),  # NME exactly at the floor: not below it
    "cpm": {COMMON: {"available": True, "params": 3, "nme": _m(18.0)}},
}


def test_flags_psnr_below_bicubic_and_nme_not_below_the_floor(tmp_path):
    results = _results(tmp_path, MODELS)
    flags = training_health(results)
    assert set(flags) == {("superfan", COMMON, "psnr"), ("superfan", COMMON, "nme"), ("fsrnet", COMMON, "nme")}
    assert all(why.startswith(HEALTH_LABEL) for why in flags.values())
    assert "bicubic's (21.00 dB)" in flags[("superfan", COMMON, "psnr")]
    assert "floor (20.00)" in flags[("fsrnet", COMMON, "nme")]


def test_flagged_cells_carry_a_footnote_and_are_never_best(tmp_path):
    results = _results(tmp_path, {**MODELS, "fsrnet": _entry(psnr=23.8, ssim=0.65, nme=20.0)})
    t1 = tables.build_paper_table(results, paper.TABLES[0])
    sf = t1.cell("SuperFAN", "300w_psnr")
    assert sf.flag and not sf.best
    # FSRNet has the highest PSNR and learned SR: bold; its NME at the floor is flagged in Table 2.
    assert t1.cell("FSRNet", "300w_psnr").best and not t1.cell("FSRNet", "300w_psnr").flag
    md = render.to_markdown(t1)
    letter = t1.marks()[sf.flag]
    assert f"14.00 ± 0.10<sup>{letter}</sup>" in md
    assert f"<sup>{letter}</sup> {sf.flag}" in md
    assert sf.flag.replace("_", r"\_") in render.to_latex(t1)

    t2 = tables.build_paper_table(results, paper.TABLES[1])
    assert "Mean shape (no learning)" in t2.rows  # the floor is a row of Table 2 when it was evaluated
    floor = t2.cell("Mean shape (no learning)", "common")
    assert floor.mean == 20.0 and not floor.ranked and not floor.best and not floor.flag
    assert "no-learning floor" in floor.paper_note
    assert t2.cell("FSRNet", "common").flag and t2.cell("SuperFAN", "common").flag
    assert not t2.cell("JASRNet", "common").flag and t2.cell("JASRNet", "common").best
    assert not t2.cell("CPM+SBR (bicubic)", "common").flag
    records = render.to_records(t2).set_index(["row", "key"])
    assert records.loc[("FSRNet", "common"), "flag"].startswith(HEALTH_LABEL)


def test_readme_lists_the_models_that_did_not_learn(tmp_path):
    results = _results(tmp_path, MODELS)
    report = Report(results, tmp_path, tables=tables.build_all(results))
    text = readme.render(report, None, commit="0" * 40)
    section = text.split("## Training health", 1)[1].split("\n## ", 1)[0]
    assert "| `superfan` | `300w/common` | PSNR | 14.00 | 21.00 (`bicubic`): did not learn in this profile |" in section
    assert "| `fsrnet` | `300w/common` | NME | 20.00 | 20.00 (`mean_shape`): did not learn in this profile |" in section
    assert "`jasrnet`" not in section and "`cpm`" not in section


def test_without_the_floor_nme_is_not_checked_and_the_readme_says_so(tmp_path):
    results = _results(tmp_path, {k: v for k, v in MODELS.items() if k != "mean_shape"})
    assert set(training_health(results)) == {("superfan", COMMON, "psnr")}
    t2 = tables.build_paper_table(results, paper.TABLES[1])
    assert "Mean shape (no learning)" not in t2.rows
    report = Report(results, tmp_path, tables=tables.build_all(results))
    assert "Not checkable here for `mean_shape`" in readme.render(report, None, commit="0" * 40)
