"""collect keeps every run × split; the tables' view picks one run per model and split by rule (issue 10 item 3)."""

from __future__ import annotations

import pytest
from pipeline_helpers import tiny_params

import jasrbench.dag as jdag
from jasrbench.collect import collect
from jasrbench.errors import ConfigError
from jasrbench.evaluate import evaluate


def test_a_model_evaluated_on_one_split_from_two_runs_keeps_both(prepared_root, tmp_path, monkeypatch):
    params = tiny_params(prepared_root)
    # The lfw run is listed first: the view must still show the 300w run for 300w/common (its own dataset).
    params["models"], params["runs"] = {"bicubic": {"tables": [1]}}, {}
    params.pop("robustness", None)  # a reduced profile: the robustness track is test_smoke_dag's
    jdag.set_model_runs(params, "bicubic", {"lfw": ["300w/common"], "300w": ["300w/common"]})
    jdag.check(params)
    monkeypatch.chdir(tmp_path)
    items = list(jdag.stages(params)["evaluate_untrained"].values())
    assert [i["run"] for i in items] == ["bicubic-lfw", "bicubic-300w"]
    for item in items:
        evaluate(item["model"], item["split"], item["out"], params)
    merged = collect(params, tmp_path)
    assert set(merged["runs"]) == {"bicubic-lfw", "bicubic-300w"}
    for rid, dataset in (("bicubic-lfw", "lfw"), ("bicubic-300w", "300w")):
        run = merged["runs"][rid]
        assert run["model"] == "bicubic" and run["trained_on"] == dataset
        assert run["splits"]["300w/common"]["available"] and run["splits"]["300w/common"]["psnr"]["n"] == 24
    view = merged["models"]["bicubic"]["300w/common"]
    assert view["run"] == "bicubic-300w" and view["psnr"] == merged["runs"]["bicubic-300w"]["splits"]["300w/common"]["psnr"]


def test_ambiguous_runs_are_a_config_error(prepared_root):
    params = tiny_params(prepared_root)
    jdag.set_model_runs(params, "jasrnet", {"300w": ["lfw/test"], "lfw": ["300w/common"]})
    jdag.check(params)  # one run per split: fine
    params["data"]["datasets"]["helen"] = {"raw": "datasets/raw/helen", "skip_bad": False}
    jdag.set_model_runs(params, "jasrnet", {"300w": ["lfw/test"], "helen": ["lfw/test"]})
    with pytest.raises(ConfigError, match=r"runs: jasrnet: split 'lfw/test' is evaluated by runs trained "
                                          r"on 300w, helen and none on lfw"):
        jdag.check(params)
