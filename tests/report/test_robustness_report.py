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
    # JASRNet's twin trained on `mixed` (the smoke profile's JASRNet otherwise), for the drops table.
    params["models"]["jasrnet_mixed"] = {"arch": "jasrnet", **params["models"]["jasrnet"], "tables": [], "train": {"degradation": "mixed"}}
    targets = {"bicubic-300w": "bicubic"}
    for model in ("jasrnet", "jasrnet_mixed"):  # the second trained on `mixed`: JASRNet's twin in the drops table
        train(model, "300w", params, root / "models" / f"{model}-300w", results / "train" / f"{model}-300w")
        targets[f"{model}-300w"] = str(root / "models" / f"{model}-300w" / "model.pt")
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
    assert set(f["degradation"]) == set(DEGRADATIONS) and set(f["model"]) == {"bicubic", "jasrnet", "jasrnet_mixed"}
    bicubic = f[(f["model"] == "bicubic") & (f["metric"] == "psnr")].set_index("degradation")
    assert (bicubic["clean"] > bicubic.loc["noise20", "mean"]).all()  # σ 20/255 costs PSNR
    assert bicubic.loc["noise20", "drop"] > bicubic.loc["noise5", "drop"] > 0  # more noise, larger drop
    versus = f[(f["model"] == "bicubic") & f["vs_jasrnet"].notna()]
    assert len(versus) == len(DEGRADATIONS) * 2  # PSNR and SSIM (bicubic has no NME) paired with JASRNet
    psnr = robustness.tables(f, "300w/common")["psnr"]
    assert list(psnr.columns) == ["clean", "blur2", "noise5", "noise20", "mixed"]
    assert set(psnr.index) == {"Bicubic", "JASRNet", "JASRNet (trained on mixed)"}
    cell = psnr.loc["Bicubic", "noise20"]
    assert cell.startswith(f"{bicubic.loc['noise20', 'mean']:.2f} (-")  # the change from clean: down
    assert robustness.label({"model": "edsr_mixed", "trained_degradation": "mixed"}) == "EDSR (trained on mixed)"
    assert robustness.label({"model": "bicubic", "trained_degradation": float("nan")}) == "Bicubic"


def test_report_writes_the_robustness_section(tree, tmp_path):
    lines = robustness.write(tree, tmp_path, figures.colours(["bicubic", "jasrnet", "jasrnet_mixed"]))
    text = "\n".join(lines)
    assert "## Robustness" in text and "GFPGAN" in text and "**PSNR (dB) on `300w/common`**" in text
    csv = pd.read_csv(tmp_path / "tables" / "robustness.csv")
    assert len(csv) == len(robustness.frame(tree, resamples=200))
    assert "\\begin{tabular}" in (tmp_path / "tables" / "robustness.tex").read_text()
    assert "### The largest drops on `300w/common`" in text and "Does training on the degradations recover them?" in text
    assert len(pd.read_csv(tmp_path / "tables" / "robustness_drops.csv")) > 0
    width, height = Image.open(tmp_path / "figures" / "robustness.png").size
    assert width == figures.pixel_size((figures.FIG_WIDTH, 1))[0] and height > width / 3


def _per_face(tree, run, degradation=None):
    folder = tree / "eval" / run / ("300w_common" if degradation is None else f"robustness/{degradation}/300w_common")
    return pd.read_csv(folder / "per_image.csv").set_index("name")


def test_largest_drops_are_paired_over_the_same_faces_and_say_what_training_on_mixed_recovers(tree):
    f = robustness.frame(tree, resamples=200)
    drops = robustness.largest_drops(f, tree, "300w/common", n=2, resamples=200)
    every = drops[drops["scope"] == "all"]
    assert "JASRNet (trained on mixed)" not in set(every["model"])  # ranked: models trained on clean LR only
    for metric in ("psnr", "ssim", "nme"):
        ranked = every[every["metric"] == metric]
        assert len(ranked) == 2 and ranked["drop"].is_monotonic_decreasing, metric
        expected = f[(f["metric"] == metric) & ~f["run"].str.startswith("jasrnet_mixed")]["drop"].nlargest(2)
        # the summaries' means against the per-face files' (written to 6 significant digits)
        assert ranked["drop"].to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-3), metric
    # The drop recomputed here from the per-face files: clean − degraded (NME: degraded − clean), same faces.
    for _, row in every.iterrows():
        clean, degraded = _per_face(tree, row["run"]), _per_face(tree, row["run"], row["degradation"])
        diff = (clean[row["metric"]] - degraded[row["metric"]]).dropna()
        diff = -diff if row["metric"] == "nme" else diff
        assert row["drop"] == pytest.approx(diff.mean(), abs=1e-9)
        assert row["drop_low"] <= row["drop"] <= row["drop_high"]
    # JASRNet has a twin trained on `mixed`: its gain over JASRNet on the same degraded faces.
    twin = drops[(drops["scope"] == "trained twin") & (drops["metric"] == "psnr")]
    assert set(twin["model"]) == {"JASRNet"} and set(twin["twin"]) == {"JASRNet (trained on mixed)"}
    for _, row in twin.iterrows():
        gain = (_per_face(tree, "jasrnet_mixed-300w", row["degradation"])["psnr"]
                - _per_face(tree, "jasrnet-300w", row["degradation"])["psnr"]).mean()
        assert row["recovered"] == pytest.approx(gain, abs=1e-9)
        assert row["recovered_low"] <= row["recovered"] <= row["recovered_high"]
    assert "Bicubic" in set(every["model"])  # bicubic has no twin: no recovery claimed for it
    assert every[every["model"] == "Bicubic"]["twin"].isna().all()
