"""Profiles and params.yaml: every profile is complete and valid; params.yaml is in sync."""

from __future__ import annotations

import shutil

import pytest
import yaml

from jasrbench import config
from jasrbench.cli import main
from jasrbench.errors import ConfigError
from jasrbench.paths import REPO_ROOT

PROFILES = sorted(p.stem for p in (REPO_ROOT / "pipelines").glob("*.yaml"))


def test_the_three_profiles_exist():
    assert {"paper", "cpu", "smoke"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_is_complete_and_every_model_builds(name):
    from jasrbench.models import build

    params = config.load_profile(name)
    dag = config.derive_dag(params)
    assert dag["prepare"] and (dag["evaluate"] or dag["evaluate_untrained"])
    for model, entry in params["models"].items():
        e = config.model_entry(params, model)
        assert e["tables"], f"{name}: {model} belongs to no table"
        if name == "smoke":  # small enough to build here; the others are built by the model tests
            build(e["arch"], **e["overrides"])
    # Every evaluated split names a prepared dataset of the profile.
    for item in dag["evaluate"].values():
        assert item["checkpoint"].startswith(f"models/{name}/")


def test_profiles_differ_in_numbers_only():
    """Same sections and the same train/evaluate keys in every profile: no profile-only code paths."""
    loaded = {n: config.load_profile(n) for n in PROFILES}
    keys = {n: (set(p), set(p["train"]), set(p["evaluate"])) for n, p in loaded.items()}
    assert len({frozenset(k[0]) for k in keys.values()}) == 1
    assert len({frozenset(k[1]) for k in keys.values()}) == 1
    assert len({frozenset(k[2]) for k in keys.values()}) == 1


def test_paper_profile_has_the_papers_schedule():
    t = config.load_profile("paper")["train"]
    assert (t["lr"], t["weight_decay"], t["milestones"], t["gamma"], t["epochs"], t["batch_size"], t["copies_per_epoch"]) == (
        5e-5, 5e-4, [20, 30], 0.5, 40, 8, 15)
    assert t["betas"] == [0.9, 0.999]


def test_smoke_profile_covers_every_table_model():
    from jasrbench.report import paper

    models = set(config.load_profile("smoke")["models"])
    for table in (paper.TABLE1, paper.TABLE2, paper.TABLE3, paper.TABLE4, paper.TABLE5):
        for row in table:
            assert set(row.models) & models, f"smoke misses a model for row {row.label}"


def test_committed_params_yaml_is_in_sync():
    assert main(["profile", "check"]) == 0


def test_use_and_sync(tmp_path):
    shutil.copytree(REPO_ROOT / "pipelines", tmp_path / "pipelines")
    params = config.use_profile("smoke", tmp_path, {"train.epochs": 3})
    text = (tmp_path / "params.yaml").read_text()
    loaded = yaml.safe_load(text)
    assert loaded["profile"] == "smoke" and loaded["train"]["epochs"] == 3
    assert loaded["dag"] == config.derive_dag(params)
    assert "&" not in text and "*" not in text.replace("**", "")  # no YAML anchors in params.yaml
    assert not config.write_params(params, tmp_path)  # unchanged: not rewritten (DVC sees no change)
    loaded["models"].pop("vdsr")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(loaded))
    assert main(["profile", "sync", "--root", str(tmp_path)]) == 0
    synced = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert "vdsr-300w" not in synced["dag"]["train"]


def test_bad_profiles_are_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'gpu'"):
        config.load_profile("gpu")
    params = config.load_profile("smoke")
    params["models"]["no_such_model"] = {"tables": [1], "train_on": {"300w": ["300w/common"]}}
    with pytest.raises(ConfigError, match="no_such_model"):
        config.validate(params)
    params = config.load_profile("smoke")
    params["models"]["jasrnet"]["train_on"] = {"helen": ["helen/test"]}
    with pytest.raises(ConfigError, match="helen"):
        config.validate(params)
