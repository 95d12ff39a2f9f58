"""The long-format results frame on the committed smoke results: one row per value, each paired test made once."""

from __future__ import annotations

import pandas as pd
import pytest

from jasrbench.metrics import statistics
from jasrbench.paths import REPO_ROOT
from jasrbench.report import paper, render, results, tables

SMOKE = REPO_ROOT / "results" / "smoke"
COMMON = "300w/common"


@pytest.fixture()
def smoke() -> results.Results:
    return results.Results(SMOKE)


def test_one_row_per_model_split_and_metric_with_the_collected_values(smoke):
    frame = smoke.frame
    assert list(frame.columns) == list(results.COLUMNS)
    assert not frame.duplicated(["model", "split", "metric"]).any()
    count = 0
    for model, entries in smoke.metrics["models"].items():
        for split, entry in entries.items():
            row = smoke.value(model, split, "params")
            assert row is not None and bool(row["available"]) == entry["available"]
            for metric, value in entry.items():
                if isinstance(value, dict) and "mean" in value:
                    row = smoke.value(model, split, metric)
                    for key in ("mean", "ci_low", "ci_high", "std", "n"):
                        assert row[key] == value[key] if key in value else pd.isna(row[key]), (model, split, key)
                    assert row["run"] == entry["run"]
                    count += 1
    assert count + sum(len(e) for e in smoke.metrics["models"].values()) == len(frame)
    assert smoke.value("bicubic", "300w/challenge", "params")["reason"]  # an unavailable split says why


def test_significance_is_the_paired_bootstrap_on_the_per_image_values(smoke):
    frame = smoke.frame
    per = {m: pd.read_csv(SMOKE / "eval" / f"{m}-300w" / "300w_common" / "per_image.csv").set_index("name")
           for m in ("jasrnet", "superfan")}
    # Faces matched by name, in JASRNet's order (the bootstrap's resamples index that order).
    names = [n for n in per["jasrnet"].index if n in set(per["superfan"].index)]
    for metric in results.PER_IMAGE_METRICS:
        expected = statistics.paired_test(per["jasrnet"].loc[names, metric].to_numpy(),
                                          per["superfan"].loc[names, metric].to_numpy(), seed=0,
                                          resamples=results.SIGNIFICANCE_RESAMPLES)
        row = smoke.value("superfan", COMMON, metric)
        assert row["vs"] == paper.REFERENCE_MODEL and row["diff"] == expected["mean_diff"]
        assert (row["diff_ci_low"], row["diff_ci_high"]) == (expected["ci_low"], expected["ci_high"])
        assert row["p_wilcoxon"] == expected["p_wilcoxon"] and row["significant"] == expected["significant"]
    # No test of JASRNet against itself, nor of values without per-image counterparts (accuracy).
    assert frame.loc[frame["model"] == paper.REFERENCE_MODEL, "vs"].isna().all()
    assert frame.loc[~frame["metric"].isin(results.PER_IMAGE_METRICS), "vs"].isna().all()
    assert frame["significant"].notna().sum() >= 20


def test_each_paired_test_is_computed_once_and_the_tables_show_it(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return statistics.paired_test(*args, **kwargs)

    monkeypatch.setattr(results, "paired_test", counted)
    smoke = results.Results(SMOKE)
    built = tables.build_all(smoke)
    tested = smoke.frame["vs"].notna().sum()
    assert len(calls) == tested  # building the frame; the five tables added none
    shown = pd.concat([render.to_records(t) for t in built])
    shown = shown[shown["vs"].notna()]
    assert len(shown) >= 20
    for rec in shown.itertuples():
        row = smoke.value(rec.model, rec.split, rec.metric)
        assert rec.diff == row["diff"] and rec.significant == row["significant"]


def test_committed_smoke_tables_are_rendered_from_the_committed_results(tmp_path):
    """Guards the refactor: the same inputs give the committed tables byte for byte."""
    smoke = results.Results(SMOKE)
    costs = tables.load_costs(REPO_ROOT / "results" / "model_costs.csv")
    for table in tables.build_all(smoke, costs):
        for ext, path in render.write_table(table, tmp_path).items():
            assert path.read_bytes() == (SMOKE / "tables" / path.name).read_bytes(), (table.name, ext)
