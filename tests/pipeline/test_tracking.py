"""What ``jasrbench.tracking`` logs besides metrics, without a server: switches, datasets, table rows and views.

The MLflow server tests (``tests/report/test_mlflow_server.py``,
``test_mlflow_browser.py``) check the same on real logged runs; these pin the
pieces on every registered model and on a real prepared split.
"""

from __future__ import annotations

import ast
import hashlib
import json

import pytest

from jasrbench import tracking
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError
from jasrbench.models import available, build, spec
from jasrbench.report import mlflow_tables
from jasrbench.report.paper import TABLES


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string switch (e.g. "add", "sr")


@pytest.mark.parametrize("name", available())
def test_the_logged_switches_rebuild_the_model(name):
    # What a run logs as arch.* is enough to rebuild its network: the builder called with exactly those
    # keywords (not the registry's merge) gives the same tensors, names and shapes, as build(name) does.
    logged = {k.removeprefix("arch."): _value(v) for k, v in tracking.arch_params(name).items()}
    assert all(k.startswith("arch.") for k in tracking.arch_params(name))
    expected = {k: tuple(v.shape) for k, v in build(name).state_dict().items()}
    rebuilt = {k: tuple(v.shape) for k, v in spec(name).builder(**logged).state_dict().items()}
    assert rebuilt == expected


def test_ablations_differ_in_their_switches_and_overrides_win():
    switches = ("arch.tasks", "arch.fusion", "arch.long_skip", "arch.fusion_mode", "arch.n_stages")
    seen = {name: tuple(tracking.arch_params(name)[k] for k in switches)
            for name in ("jasrnet", "jasrnet_bl_sr", "jasrnet_bl_align", "jasrnet_bl_f_sr", "jasrnet_bl_f_align",
                         "jasrnet_jt", "jasrnet_jt_f", "jasrnet_concat", "jasrnet_stages1", "jasrnet_stages2")}
    assert len(set(seen.values())) == len(seen), seen  # no two ablations look alike in the UI
    assert seen["jasrnet_bl_sr"] == ("sr", "False", "False", "add", "3")
    assert seen["jasrnet_jt_f"] == ("both", "True", "False", "add", "3")
    small = tracking.arch_params("jasrnet_res16", {"n_feats": 16})
    assert small["arch.n_feats"] == "16" and small["arch.n_shared_blocks"] == "16"  # registry default kept
    with pytest.raises(ConfigError, match="unknown model 'nosuch'"):
        tracking.arch_params("nosuch")


def test_prepared_split_dataset_has_content_digest_protocol_and_faces(prepared_root):
    path = prepared_root / "300w" / "common.npz"
    split = load_split(path)
    dataset = tracking.split_dataset(path, split.metadata, len(split))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert dataset.name == "300w/common" and dataset.digest == sha[:16]
    assert tracking.split_faces(path) == len(split)  # read from the file's header
    logged = dataset._to_mlflow_entity()  # what log_input sends
    assert json.loads(logged.profile) == {"faces": len(split), "protocol": split.metadata.get("protocol", "clean"),
                                          "points": split.num_points, "sha256": sha}
    assert json.loads(logged.source)["uri"].endswith("/300w/common.npz")


def test_table_rows_splits_and_metrics_follow_the_paper_tables():
    assert mlflow_tables.table_metrics(4) == ["psnr", "nme"]
    assert mlflow_tables.table_metrics(3)[0] == "acc" and "params" not in mlflow_tables.table_metrics(3)  # a param
    # evaluate logs by tracking.TABLE_SPLITS (it imports nothing from report/): the paper tables' columns agree.
    for spec_ in TABLES:
        assert tracking.TABLE_SPLITS[spec_.number] == {split for c in spec_.columns for split in c.splits}, spec_.number
    assert set(tracking.TABLE_SPLITS) == {spec_.number for spec_ in TABLES}
    assert mlflow_tables.paper_row(4, "jasrnet_bl_sr") == mlflow_tables.paper_row(4, "jasrnet_bl_align") == "BL"
    assert mlflow_tables.paper_row(5, "jasrnet") == "Adding / Res_32"
    assert mlflow_tables.paper_row(4, "edsr") is None
    link = tracking.runs_page("7", view=True)
    assert link == "#/experiments/7/runs?viewStateShareKey=jasrbench&workflowType=machine_learning"
    assert link in mlflow_tables.table_note(4, "7")
