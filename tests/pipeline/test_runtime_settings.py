"""Runtime settings (jasrbench/settings.py): outside the params and the run's fingerprint (issue 13, item 5)."""

from __future__ import annotations

import pytest
from pipeline_helpers import tiny_params

from jasrbench import recipe, settings

import jasrbench.params as jparams
from jasrbench.errors import ConfigError
from jasrbench.paths import REPO_ROOT
from jasrbench.train import train


def test_option_over_environment_over_default():
    assert settings.load({}) == settings.Runtime("auto", "auto", 1000, 32, False)
    env = {"JASRBENCH_DEVICE": "cuda:1", "JASRBENCH_COMPILE": "off", "JASRBENCH_CHECKPOINT_EVERY": "0",
           "JASRBENCH_EVAL_BATCH_SIZE": "128", "JASRBENCH_FIXED_ORDER_GRADS": "1"}
    assert settings.load(env) == settings.Runtime("cuda:1", False, 0, 128, True)
    assert settings.load(env, device="cpu", eval_batch_size=None).device == "cpu"
    with pytest.raises(ConfigError, match=r"^--device: 'cuda:x' is not a device"):
        settings.load({}, device="cuda:x")


def test_no_profile_holds_a_runtime_setting():
    assert set(recipe.RUNTIME_SETTINGS.values()) == set(settings.ENV.values())
    for name in ("smoke", "cpu", "paper"):
        params = jparams.load_profile(name, REPO_ROOT)
        for dotted in recipe.RUNTIME_SETTINGS:
            section, key = dotted.split(".")
            assert key not in params[section], f"pipelines/{name}.yaml: {dotted}"


def test_an_interrupted_run_resumes_under_other_runtime_settings(prepared_root, tmp_path, monkeypatch, caplog):
    """Checkpoint frequency and validation batch are not in the fingerprint: the run resumes, not restarts."""
    params = tiny_params(prepared_root, epochs=1, max_faces=8, val_faces=4)
    out = tmp_path / "ckpt"
    monkeypatch.setenv("JASRBENCH_CHECKPOINT_EVERY", "1")
    monkeypatch.setenv("JASRBENCH_EVAL_BATCH_SIZE", "2")
    assert train("jasrnet_bl_sr", "300w", params, out, stop_after_steps=1) == {"stopped_early": True}
    monkeypatch.setenv("JASRBENCH_CHECKPOINT_EVERY", "0")
    monkeypatch.setenv("JASRBENCH_EVAL_BATCH_SIZE", "64")
    with caplog.at_level("INFO"):
        summary = train("jasrnet_bl_sr", "300w", params, out, device="cpu")
    assert "resuming jasrnet_bl_sr in epoch 1 after 1 of its" in caplog.text
    assert "not resumed" not in caplog.text
    assert summary["device"] == "cpu"
