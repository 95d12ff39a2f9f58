"""Profiles and params.yaml: every profile is complete and valid; params.yaml's `runs` is the DAG."""

from __future__ import annotations

import shutil

import pytest
import yaml

from jasrbench import profiles

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.cli import main
from jasrbench.errors import ConfigError
from jasrbench.paths import REPO_ROOT

PROFILES = sorted(p.stem for p in (REPO_ROOT / "pipelines").glob("*.yaml"))


def test_the_three_profiles_exist():
    assert {"paper", "cpu", "smoke"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_is_complete_and_every_model_builds(name):
    from jasrbench.models import build

    params = jparams.load_profile(name)
    dag = jdag.stages(params)
    assert dag["prepare"] and (dag["evaluate"] or dag["evaluate_untrained"])
    for model, entry in params["models"].items():
        e = jparams.model_entry(params, model)
        # Every model fills a table, or the robustness track (the *_mixed models trained on a degradation).
        assert e["tables"] or model in jdag.robustness_plan(params)[2], f"{name}: {model} belongs to no table"
        if name == "smoke":  # small enough to build here; the others are built by the model tests
            build(e["arch"], **e["overrides"])
    # Every evaluated split names a prepared dataset of the profile.
    for item in dag["evaluate"].values():
        assert item["checkpoint"].startswith(f"models/{name}/")


def test_profiles_differ_in_numbers_only():
    """Same sections and the same train/evaluate keys in every profile: no profile-only code paths."""
    loaded = {n: jparams.load_profile(n) for n in PROFILES}
    keys = {n: (set(p), set(p["train"]), set(p["evaluate"])) for n, p in loaded.items()}
    assert len({frozenset(k[0]) for k in keys.values()}) == 1
    assert len({frozenset(k[1]) for k in keys.values()}) == 1
    assert len({frozenset(k[2]) for k in keys.values()}) == 1


def test_paper_profile_has_the_papers_schedule():
    t = jparams.load_profile("paper")["train"]
    assert (t["lr"], t["weight_decay"], t["milestones"], t["gamma"], t["epochs"], t["batch_size"], t["copies_per_epoch"]) == (
        5e-5, 5e-4, [20, 30], 0.5, 40, 8, 15)
    assert t["betas"] == [0.9, 0.999]


def test_smoke_profile_covers_every_table_model():
    from jasrbench.report import paper

    models = set(jparams.load_profile("smoke")["models"])
    for table in (paper.TABLE1, paper.TABLE2, paper.TABLE3, paper.TABLE4, paper.TABLE5):
        for row in table:
            assert set(row.models) & models, f"smoke misses a model for row {row.label}"


def test_committed_params_yaml_is_the_smoke_profile_and_valid():
    assert main(["profile", "check"]) == 0
    assert jparams.load_params(REPO_ROOT / "params.yaml") == jparams.load_profile("smoke", REPO_ROOT)


def test_use_copies_the_profile(tmp_path):
    shutil.copytree(REPO_ROOT / "pipelines", tmp_path / "pipelines")
    params = profiles.use_profile("smoke", tmp_path, {"train.epochs": 3})
    text = (tmp_path / "params.yaml").read_text()
    loaded = yaml.safe_load(text)
    assert loaded["profile"] == "smoke" and loaded["train"]["epochs"] == 3
    assert loaded["runs"] == jparams.load_profile("smoke", REPO_ROOT)["runs"] == params["runs"]
    assert "&" not in text and "*" not in text.replace("**", "")  # no YAML anchors in params.yaml
    assert not profiles.write_params(params, tmp_path)  # unchanged: not rewritten (DVC sees no change)


def test_runs_entries_printed_for_a_model_are_the_profiles(capsys):
    assert main(["profile", "runs", "superfan", "--on", "300w=300w/common,lfw/test"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["runs"]
    smoke = jparams.load_profile("smoke", REPO_ROOT)["runs"]
    assert set(printed) == {"pretrain", "train", "evaluate"}
    for section, entries in printed.items():
        assert entries == {k: v for k, v in smoke[section].items() if v["model"] == "superfan"}


BAD_RUNS = [  # (edit of the smoke params, the message after "params.yaml: ")
    (lambda r: r["train"]["superfan-300w"].update(code2="jasrbench/models/superfan.py"),
     "runs.train.superfan-300w.code2 must be 'jasrbench/models/fsrnet.py', got 'jasrbench/models/superfan.py'"),
    (lambda r: r["train"]["superfan-300w"].update(init="jasrbench/models/superfan.py"),
     "runs.train.superfan-300w.init must be 'models/smoke/pretrain/superfan_fan-300w/fan.pt', got "),
    (lambda r: r["train"].pop("jasrnet-300w"),
     "runs.evaluate.jasrnet-300w-300w_common.run: no runs.train.jasrnet-300w trains the checkpoint it evaluates"),
    (lambda r: r["train"].update({"vdsr-helen": {**r["train"]["vdsr-300w"], "dataset": "helen"}}),
     "runs.train.vdsr-helen: dataset 'helen' not in data.datasets"),
    (lambda r: r["evaluate_untrained"].update({"jasrnet-300w-300w_full": r["evaluate"]["jasrnet-300w-300w_common"]}),
     "runs.evaluate_untrained.jasrnet-300w-300w_full: model 'jasrnet' has weights: evaluate it from runs.evaluate"),
    (lambda r: r["pretrain"].clear(), "runs.train.superfan-300w: models.superfan.pretrain asks for "
                                      "runs.pretrain.superfan_fan-300w, absent"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_RUNS, ids=[m.split(":")[0] for _, m in BAD_RUNS])
def test_a_runs_entry_that_does_not_match_the_code_is_named(edit, message):
    params = jparams.load_profile("smoke", REPO_ROOT)
    edit(params["runs"])
    with pytest.raises(ConfigError) as err:
        jdag.check(params)
    assert str(err.value).startswith(f"params.yaml: {message}"), str(err.value)


def test_bad_profiles_are_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'gpu'"):
        jparams.load_profile("gpu")
    params = jparams.load_profile("smoke")
    params["models"]["no_such_model"] = {"tables": [1]}
    with pytest.raises(ConfigError, match="no_such_model"):
        jdag.check(params)
    params = jparams.load_profile("smoke")
    params["models"]["jasrnet"]["train_on"] = {"300w": ["300w/common"]}
    with pytest.raises(ConfigError, match=r"models\.jasrnet\.train_on: replaced by the `runs` section"):
        jdag.check(params)
