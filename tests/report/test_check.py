"""The regression gate: fails on a regression beyond tolerance, naming model, metric and values."""

from __future__ import annotations

import copy
import json

import pytest

from jasrbench.cli import main
from jasrbench.report.check import compare, tolerance_for

BASE = {
    "profile": "smoke",
    "models": {
        "jasrnet": {"300w/common": {"available": True, "psnr": {"mean": 22.5, "ci_low": 22.1, "ci_high": 22.9},
                                    "ssim": {"mean": 0.61}, "nme": {"mean": 7.2}}},
        "bicubic": {"300w/common": {"available": True, "psnr": {"mean": 21.4}},
                    "300w/challenge": {"available": False, "reason": "needs ibug/"}},
    },
}


def test_identical_results_pass():
    assert [f for f in compare(BASE, BASE) if f.regression] == []


@pytest.mark.parametrize(
    ("metric", "worse", "better"),
    [("psnr", 22.3, 22.8), ("ssim", 0.60, 0.63), ("nme", 7.5, 6.9)],
)
def test_direction_aware_tolerances(metric, worse, better):
    actual = copy.deepcopy(BASE)
    actual["models"]["jasrnet"]["300w/common"][metric] = {"mean": worse}
    found = [f for f in compare(BASE, actual) if f.regression]
    assert len(found) == 1 and found[0].model == "jasrnet" and found[0].metric == metric
    actual["models"]["jasrnet"]["300w/common"][metric] = {"mean": better}
    assert [f for f in compare(BASE, actual) if f.regression] == []
    assert any(not f.regression and "improved" in f.message for f in compare(BASE, actual))


def test_within_tolerance_passes():
    actual = copy.deepcopy(BASE)
    actual["models"]["jasrnet"]["300w/common"]["psnr"] = {"mean": 22.5 - 0.5 * tolerance_for("psnr")[0]}
    assert [f for f in compare(BASE, actual) if f.regression] == []


def test_disappearing_model_split_metric_fail():
    actual = copy.deepcopy(BASE)
    del actual["models"]["jasrnet"]["300w/common"]["nme"]
    assert any(f.metric == "nme" and "disappeared" in f.message for f in compare(BASE, actual))
    del actual["models"]["bicubic"]
    assert any(f.model == "bicubic" and f.regression for f in compare(BASE, actual))


def test_cli_names_the_regressed_model(tmp_path, capsys):
    expected, actual = tmp_path / "expected.json", tmp_path / "metrics.json"
    expected.write_text(json.dumps(BASE))
    worse = copy.deepcopy(BASE)
    worse["models"]["jasrnet"]["300w/common"]["psnr"]["mean"] = 21.0
    actual.write_text(json.dumps(worse))
    assert main(["check", "--expected", str(expected), "--actual", str(actual)]) == 1
    err = capsys.readouterr()
    assert "jasrnet / 300w/common / psnr" in err.out and "22.5000" in err.out and "21.0000" in err.out
    assert main(["check", "--expected", str(expected), "--actual", str(actual), "--update"]) == 0
    assert json.loads(expected.read_text()) == worse
    assert main(["check", "--expected", str(expected), "--actual", str(actual)]) == 0


def test_tolerance_rules_cover_every_reported_metric():
    for metric in ("psnr", "psnr_image", "ssim_jasrnet_code", "nme", "nme_inter_pupil", "auc_0.08",
                   "failure_rate_0.08", "acc", "acc_hr", "roc_auc", "roc_auc_hr"):
        assert tolerance_for(metric) is not None, metric
    assert tolerance_for("roc_auc") == (0.005, True)
    assert tolerance_for("failure_rate_0.08")[1] is False


def test_profile_tolerance_overrides(tmp_path):
    actual = copy.deepcopy(BASE)
    actual["models"]["jasrnet"]["300w/common"]["nme"] = {"mean": 9.0}
    assert any(f.regression for f in compare(BASE, actual))
    loose = dict(copy.deepcopy(BASE), tolerances={"nme": 5.0})
    assert not any(f.regression for f in compare(loose, actual))
    actual["models"]["jasrnet"]["300w/common"]["psnr"] = {"mean": 20.0}  # other metrics keep their tolerance
    assert [f.metric for f in compare(loose, actual) if f.regression] == ["psnr"]
    with pytest.raises(Exception, match="unknown tolerance keys"):
        compare(dict(BASE, tolerances={"psnrr": 1}), actual)
    # --update keeps the expectations' tolerance overrides.
    e, a = tmp_path / "expected.json", tmp_path / "metrics.json"
    e.write_text(json.dumps(loose))
    a.write_text(json.dumps(actual))
    assert main(["check", "--expected", str(e), "--actual", str(a), "--update"]) == 0
    assert json.loads(e.read_text())["tolerances"] == {"nme": 5.0}
