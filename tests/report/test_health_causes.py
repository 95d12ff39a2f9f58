"""The training-health note names a measured cause where one was measured (issue 24): a flagged model whose
code was run beside its authors' (results/fidelity/<model>.json) is a budget effect when the two agree, and
a possible defect when they do not; its validation curve in the profile says whether it was still rising."""

from __future__ import annotations

import json

import pandas as pd

from jasrbench.report.readme import measured_causes


def _tree(tmp_path, *, loss_rel: float, training: bool = True, psnr=(13.2, 18.0, 21.5)):
    results = tmp_path / "results" / "cpu"
    (results / "train" / "jasrnet-300w").mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(psnr) + 1), "val_psnr": psnr}).to_csv(
        results / "train" / "jasrnet-300w" / "history.csv", index=False)
    fidelity = {"goal_rel": 1e-5,
                "one_batch": {"forward": {"max_rel": 0.0, "within_goal": True},
                              "gradients": {"max_rel": 2e-7, "within_goal": True}}}
    if training:
        fidelity["training"] = {"steps": 200, "loss_max_rel_over_steps": loss_rel, "val_psnr_max_abs_over_evals": 1e-4}
    (tmp_path / "results" / "fidelity").mkdir()
    (tmp_path / "results" / "fidelity" / "jasrnet.json").write_text(json.dumps(fidelity))
    return results


def test_agreement_with_the_authors_code_makes_the_flag_a_budget_effect(tmp_path):
    lines = measured_causes(_tree(tmp_path, loss_rel=1.3e-7), ["jasrnet", "edsr"])
    text = "\n".join(lines)
    assert "`jasrnet`: **a training-budget effect, not a defect.**" in text
    assert "over 200 equal-budget steps" in text and "fidelity/jasrnet.json" in text
    assert "from 13.20 to 21.50 dB over 3 epochs, still rising at the last epoch" in text
    assert "`edsr`" not in text  # no fidelity measurement: no cause claimed


def test_a_disagreement_or_no_training_run_claims_no_budget_effect(tmp_path):
    text = "\n".join(measured_causes(_tree(tmp_path / "a", loss_rel=0.2), ["jasrnet"]))
    assert "may be a defect" in text and "budget effect" not in text
    assert measured_causes(_tree(tmp_path / "b", loss_rel=1e-7, training=False), ["jasrnet"]) == []
    peaked = "\n".join(measured_causes(_tree(tmp_path / "c", loss_rel=1e-7, psnr=(13.0, 21.6, 21.4)), ["jasrnet"]))
    assert "best at epoch 2" in peaked
    flat = "\n".join(measured_causes(_tree(tmp_path / "d", loss_rel=1e-7, psnr=(6.18, 6.18)), ["jasrnet"]))
    assert "still rising" not in flat and "not rising at the last" in flat


def _budget(tmp_path, past: int | None, profile: str = "cpu"):
    history = [{"epoch": e, "val_psnr": 21.0 + 0.1 * e} for e in range(1, 16)]
    budget = {"profile": profile, "recipe_epochs": 10, "epochs": 15, "steps_per_epoch": 59, "val_faces": 50,
              "bicubic_val": {"val_psnr": 22.05}, "first_epoch_past_bicubic": past,
              "first_step_past_bicubic": past and past * 59, "history": history}
    (tmp_path / "results" / "fidelity" / "jasrnet_budget.json").write_text(json.dumps(budget))


def test_the_measured_budget_is_cited_for_its_own_profile_only(tmp_path):
    results = _tree(tmp_path / "a", loss_rel=1e-7)
    _budget(tmp_path / "a", past=11)
    text = "\n".join(measured_causes(results, ["jasrnet"]))
    assert ("passes bicubic's 22.05 dB on the same 50 validation faces at epoch 11, step 649: "
            "1.1× this profile's 590 steps") in text and "fidelity/jasrnet_budget.json" in text
    results = _tree(tmp_path / "b", loss_rel=1e-7)
    _budget(tmp_path / "b", past=None)
    text = "\n".join(measured_causes(results, ["jasrnet"]))
    assert "run on for 15 epochs (885 steps, 1.5× this profile's budget" in text
    assert "had not passed bicubic's 22.05 dB" in text
    assert "stayed between 22.00 and 22.50 dB from epoch 10 to 15" in text  # the history after the recipe's end
    results = _tree(tmp_path / "c", loss_rel=1e-7)
    _budget(tmp_path / "c", past=11, profile="paper")  # measured for another profile: not this one's budget
    assert "bicubic's 22.05" not in "\n".join(measured_causes(results, ["jasrnet"]))
