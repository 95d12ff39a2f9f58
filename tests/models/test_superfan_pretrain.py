"""Super-FAN as its paper trains it: the FAN alone on HR faces first (`pretrain` stage), then SR + FAN jointly."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.errors import DataError
from jasrbench.models import build
from jasrbench.paths import REPO_ROOT
from jasrbench.pretrain import pretrain
from jasrbench.pretrained_weights import pretrained_file
from model_helpers import SMALL


@pytest.fixture
def params(prepared_300w, monkeypatch, tmp_path):
    """The smoke profile on 24 real training faces (8 for validation), batch 4, in a scratch repository root."""
    monkeypatch.setenv("JASRBENCH_MLFLOW", "0")
    monkeypatch.chdir(tmp_path)  # models/<profile>/pretrain/... is repository-relative
    p = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    p["data"]["prepared"] = str(prepared_300w.out.parent)
    p["train"].update({"epochs": 1, "batch_size": 4, "max_faces": 24, "val_faces": 8})
    p["models"]["superfan"]["overrides"] = dict(SMALL["superfan"])
    p["models"]["superfan"]["pretrain"] = {"epochs": 2, "lr": 1e-3}
    return p


def test_dag_has_the_pretrain_stage_and_training_depends_on_its_output(params):
    dag = jdag.stages(params)
    assert sorted(dag["pretrain"]) == ["dic_hourglass-300w", "superfan_fan-300w"]  # Super-FAN's FAN and DIC's hourglass
    fan = pretrained_file("smoke", "superfan", "fan", "300w")
    assert fan == "models/smoke/pretrain/superfan_fan-300w/fan.pt"
    assert dag["pretrain"]["superfan_fan-300w"]["out"] == "models/smoke/pretrain/superfan_fan-300w"
    assert dag["train"]["superfan-300w"]["init"] == fan
    assert dag["train"]["jasrnet-300w"]["init"] == dag["train"]["jasrnet-300w"]["code"]  # nothing to start from
    bad = copy.deepcopy(params)
    bad["models"]["jasrnet"]["pretrain"] = {"epochs": 1}
    with pytest.raises(Exception, match="models.jasrnet.pretrain"):
        jdag.check(bad)
    bad["models"]["jasrnet"]["pretrain"] = {"epochs": 1, "steps": 3}
    with pytest.raises(Exception, match="unknown keys"):
        jdag.check(bad)


def test_pretrained_fan_is_what_joint_training_starts_from(params, tmp_path):
    out = tmp_path / pretrained_file("smoke", "superfan", "fan", "300w")
    summary = pretrain("superfan", "300w", params, out.parent, tmp_path / "res")
    assert summary["part"] == "fan" and summary["epochs"] == 2 and summary["train_faces"] == 24
    history = (tmp_path / "res" / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss_heatmap,val_nme_hr") and len(history) == 3
    saved = json.loads((tmp_path / "res" / "pretrain.json").read_text())
    assert saved["best_val_nme_hr"] > 0
    ckpt = torch.load(out, map_location="cpu", weights_only=True)

    # The FAN actually trained: its weights moved from the seed's initialization.
    torch.manual_seed(int(params["seed"]))
    fresh = build("superfan", **SMALL["superfan"])
    assert any(not torch.equal(v, fresh.fan.state_dict()[k]) for k, v in ckpt["state_dict"].items())

    # load_pretrained puts exactly those weights into a new model's FAN; the SR network is untouched.
    model = build("superfan", **SMALL["superfan"])
    sr_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fan.")}
    model.load_pretrained(str(out))
    for k, v in model.fan.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in sr_before.items())

    # The training stage loads it (from the profile's `pretrain` entry) before its first step.
    from jasrbench.train import train

    seen = []
    original = type(model).load_pretrained
    try:
        type(model).load_pretrained = lambda self, path: (seen.append(path), original(self, path))[1]
        train("superfan", "300w", params, tmp_path / "ckpt", tmp_path / "train_res")
    finally:
        type(model).load_pretrained = original
    assert seen == ["models/smoke/pretrain/superfan_fan-300w/fan.pt"]


def test_a_missing_or_mismatched_pretrained_fan_is_a_one_line_error(params, tmp_path):
    model = build("superfan", **SMALL["superfan"])
    with pytest.raises(DataError, match="pretrained fan not found"):
        model.load_pretrained(str(tmp_path / "nowhere" / "fan.pt"))
    wide = build("superfan", **{**SMALL["superfan"], "fan_feats": 32})
    path = tmp_path / "fan.pt"
    torch.save({"format": "jasrbench-pretrained", "version": 1, "part": "fan", "num_points": 68,
                "state_dict": wide.fan.state_dict()}, path)
    with pytest.raises(DataError, match="does not fit this fan"):
        model.load_pretrained(str(path))
    torch.save({"format": "jasrbench-pretrained", "version": 1, "part": "fan", "num_points": 19,
                "state_dict": model.fan.state_dict()}, path)
    with pytest.raises(DataError, match="pretrained for 19 points"):
        model.load_pretrained(str(path))
