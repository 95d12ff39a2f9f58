"""The report's robustness table and curves from a results tree of real evaluations (issue 26): bicubic and a
tiny trained JASRNet on real 300W faces, clean and under three camera degradations."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from jasrbench.collect import _entry
from jasrbench.evaluate import evaluate
from jasrbench.files import atomic_write_json
from jasrbench.report import figures, robustness
from jasrbench.train import train

DEGRADATIONS = ("blur2", "noise5", "noise20", "mixed")


@pytest.fixture(scope="module")
def tree(prepared_300w, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JASRBENCH_MLFLOW", "0")  # no store written by these evaluations
        yield _tree(prepared_300w, tmp_path_factory)


def _tree(prepared_300w, tmp_path_factory):
    import copy

    import jasrbench.params as jparams
    from jasrbench.paths import REPO_ROOT

    root = tmp_path_factory.mktemp("robust")
    prepared = prepared_300w.out.parent
    params = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    params["data"]["prepared"] = str(prepared)
    params["train"].update({"epochs": 1, "max_faces": 16, "val_faces": 8})
    params["evaluate"].update({"max_faces": 24, "bootstrap_resamples": 200})
    results = root / "results" / "smoke"
    train("jasrnet", "300w", params, root / "models" / "jasrnet-300w", results / "train" / "jasrnet-300w")
    targets = {"bicubic-300w": "bicubic", "jasrnet-300w": str(root / "models" / "jasrnet-300w" / "model.pt")}
    runs, robust = {}, {}
    for run, target in targets.items():
        model = run.rsplit("-", 1)[0]
        out = results / "eval" / run / "300w_common"
        evaluate(target, "300w/common", out, params, prepared=prepared)
        runs[run] = {"model": model, "trained_on": "300w", "splits": {"300w/common": _entry(out / "summary.json")}}
        for d in DEGRADATIONS:
            out = results / "eval" / run / "robustness" / d / "300w_common"
            evaluate(target, "300w/common", out, params, prepared=prepared, degradation=d)
            robust.setdefault(run, {"model": model, "trained_on": "300w", "degradations": {}})["degradations"][d] = {
                "300w/common": _entry(out / "summary.json")}
    atomic_write_json(results / "metrics.json", {"profile": "smoke", "runs": runs, "models": {}, "robustness": robust})
    return results


def test_robustness_frame_tables_and_curves(tree):
    f = robustness.frame(tree, resamples=200)
    assert set(f["degradation"]) == set(DEGRADATIONS) and set(f["model"]) == {"bicubic", "jasrnet"}
    bicubic = f[(f["model"] == "bicubic") & (f["metric"] == "psnr")].set_index("degradation")
    assert (bicubic["clean"] > bicubic.loc["noise20", "mean"]).all()  # σ 20/255 costs PSNR
    assert bicubic.loc["noise20", "drop"] > bicubic.loc["noise5", "drop"] > 0  # more noise, larger drop
    versus = f[(f["model"] == "bicubic") & f["vs_jasrnet"].notna()]
    assert len(versus) == len(DEGRADATIONS) * 2  # PSNR and SSIM (bicubic has no NME) paired with JASRNet
    psnr = robustness.tables(f, "300w/common")["psnr"]
    assert list(psnr.columns) == ["clean", "blur2", "noise5", "noise20", "mixed"]
    assert set(psnr.index) == {"Bicubic", "JASRNet"}
    cell = psnr.loc["Bicubic", "noise20"]
    assert cell.startswith(f"{bicubic.loc['noise20', 'mean']:.2f} (-")  # the change from clean: down
    assert robustness.label({"model": "edsr_mixed", "trained_degradation": "mixed"}) == "EDSR (trained on mixed)"
    assert robustness.label({"model": "bicubic", "trained_degradation": float("nan")}) == "Bicubic"


def test_report_writes_the_robustness_section(tree, tmp_path):
    lines = robustness.write(tree, tmp_path, figures.colours(["bicubic", "jasrnet"]))
    text = "\n".join(lines)
    assert "## Robustness" in text and "GFPGAN" in text and "**PSNR (dB) on `300w/common`**" in text
    csv = pd.read_csv(tmp_path / "tables" / "robustness.csv")
    assert len(csv) == len(robustness.frame(tree, resamples=200))
    assert "\\begin{tabular}" in (tmp_path / "tables" / "robustness.tex").read_text()
    width, height = Image.open(tmp_path / "figures" / "robustness.png").size
    assert width == figures.pixel_size((figures.FIG_WIDTH, 1))[0] and height > width / 3
