"""What ``jasrbench.tracking`` logs besides metrics, without a server: switches, datasets, table rows and views.

The MLflow server tests (``tests/report/test_mlflow_server.py``,
``test_mlflow_browser.py``) check the same on real logged runs; these pin the
pieces on every registered model and on a real prepared split.
"""

from __future__ import annotations

import hashlib
import inspect
import json

import pytest

from jasrbench import tracking
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError
from jasrbench.models import available, spec


@pytest.mark.parametrize("name", available())
def test_every_model_logs_all_its_build_keywords_under_arch_keys(name):
    params = tracking.arch_params(name)
    keywords = {k for k, p in inspect.signature(spec(name).builder).parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}
    assert set(params) == {f"arch.{k}" for k in keywords | set(spec(name).defaults)}
    assert all(isinstance(v, str) for v in params.values())


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
    assert tracking.table_metrics(4) == ["psnr", "nme"]
    assert tracking.table_metrics(3)[0] == "acc" and "params" not in tracking.table_metrics(3)  # a param, not a metric
    assert tracking.table_splits(4) == {"300w/common", "300w/full"}
    assert tracking.paper_row(4, "jasrnet_bl_sr") == tracking.paper_row(4, "jasrnet_bl_align") == "BL"
    assert tracking.paper_row(5, "jasrnet") == "Adding / Res_32"
    assert tracking.paper_row(4, "edsr") is None
    link = tracking.runs_page("7", view=True)
    assert link == "#/experiments/7/runs?viewStateShareKey=jasrbench&workflowType=machine_learning"
    assert link in tracking._experiment_note("jasrbench/smoke/table4", "7")
