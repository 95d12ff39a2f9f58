"""The report stage: its README, its CLI, and its declaration in dvc.yaml (deps, outs, plots)."""

from __future__ import annotations

import re

import pytest
import yaml

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.cli import main
from jasrbench.paths import REPO_ROOT
from jasrbench.report import paper, tables


def test_generated_readme(results_tree):
    readme = (results_tree.results / "README.md").read_text()
    assert readme.startswith("# jasrbench results — profile `smoke`")
    assert re.search(r"\*\*Git commit\*\*: `[0-9a-f]{40}(-dirty)?`", readme)
    assert results_tree.params["data"]["datasets"]["lfw"]["stand_in"] in readme  # which data, labelled
    assert "`300w/challenge`" in readme and "unavailable: needs ibug/" in readme
    assert "make reproduce" in readme and "make mlflow-ui" in readme and "tags.table_4 = 'yes'" in readme
    for table in [*(spec.name for spec in paper.TABLES), "costs"]:
        md = (results_tree.tables / f"{table}.md").read_text()
        assert md.strip() in readme, table
    for stem in re.findall(r"!\[[^]]*\]\(figures/([a-z_]+)\.png\)", readme):
        assert (results_tree.figures / f"{stem}.png").is_file() and (results_tree.figures / f"{stem}.pdf").is_file()
    assert len(re.findall(r"!\[", readme)) == 5


def test_cli_needs_results_and_names_what_is_missing(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nowhere"), "--params", str(REPO_ROOT / "params.yaml")]) == 1
    assert "metrics.json" in capsys.readouterr().err


def test_cli_tables_only(results_tree, tmp_path):
    assert main(["report", "--results", str(results_tree.results), "--out", str(tmp_path), "--no-figures",
                 "--costs", str(tmp_path / "absent.csv"), "--params", str(results_tree.root / "params.yaml")]) == 0
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == sorted(
        f"table{i}.{e}" for i in range(1, 6) for e in ("tex", "csv", "md"))  # no cost table without its CSV
    assert not (tmp_path / "figures").exists() and (tmp_path / "README.md").is_file()


def _dvc() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def test_report_stage_declared_last_with_its_deps_and_outs():
    stages = _dvc()["stages"]
    assert list(stages)[-1] == "report"
    stage = stages["report"]
    assert stage["cmd"] == "python -m jasrbench report --results results/${profile} --out results/${profile}"
    deps = [d.split("#")[0].strip() for d in stage["deps"]]
    for dep in ("results/${profile}/metrics.json", "results/${profile}/eval", "results/${profile}/train",
                "models/${profile}", "results/fidelity", "jasrbench/report/build.py", "jasrbench/report/robustness.py"):
        assert dep in deps
    outs = {next(iter(o)): next(iter(o.values())) for o in stage["outs"]}
    assert outs == {f"results/${{profile}}/{name}": {"cache": False} for name in ("tables", "figures", "README.md")}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_top_level_plots_name_files_every_profile_writes(profile):
    """The cross-model plots name CED and history files; each must be an output of the profile's DAG."""
    params = jparams.load_profile(profile, REPO_ROOT)
    dag = jdag.stages(params)
    written = {f"{e['out']}/ced.csv" for e in dag["evaluate"].values()}
    written |= {f"{t['results']}/history.csv" for t in dag["train"].values()}
    plots = _dvc()["plots"]
    assert {next(iter(p)) for p in plots} == {"ced_300w_common", "validation_psnr", "validation_nme"}
    for plot in plots:
        definition = next(iter(plot.values()))
        for path in definition["y"]:
            assert path.replace("${profile}", profile) in written, (profile, path)


def test_cost_and_paper_tables_name_every_paper_row():
    """paper.py's transcription: every row of DESIGN §5 and the parameter counts the cost table quotes."""
    assert [len(spec.rows) for spec in paper.TABLES] == [9, 4, 5, 5, 6]
    assert paper.PAPER_PARAMS["jasrnet"] == pytest.approx(19_885_814 / tables.PARAM_UNIT, abs=0.005)
