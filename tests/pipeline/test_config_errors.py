"""Bad configuration and bad checkpoints: one line naming the key or file, exit status 1, before any work.

Every case runs the real CLI (``jasrbench train`` / ``evaluate``) in-process and checks the exact
message: a traceback, a second line or a failure after an epoch would all fail here.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from pipeline_helpers import tiny_params, write_params

from jasrbench.cli import main
from jasrbench.train import train


def _run(capsys, *argv) -> str:
    rc = main([*map(str, argv)])
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("jasrbench ")]  # after progress bars
    assert rc == 1 and len(errors) == 1 and "Traceback" not in err, (rc, err[-3000:])
    return errors[0]


def _train(capsys, params_file, out, model="jasrnet"):
    return _run(capsys, "train", model, "--dataset", "300w", "--params", params_file, "--out", out)


BAD_TRAIN = [  # (dotted key, value, the message after "jasrbench train: error: <params file>: ")
    ("train.augment.rotate", 10, "train.augment.rotate: unknown key; known: flip, rotation, scale, translate"),
    ("train.val_faces", 0, "train.val_faces must be >= 1, got 0"),
    ("train.batch_size", 0, "train.batch_size must be >= 1, got 0"),
    ("train.epochs", 0, "train.epochs must be >= 1, got 0"),
    ("train.lr", -1.0e-4, "train.lr must be > 0, got -0.0001"),
    ("models.jasrnet.train", {"lr": -1}, "models.jasrnet.train.lr must be > 0, got -1"),
    ("models.jasrnet.arch", "jasrnet_xl", "models.jasrnet: unknown model 'jasrnet_xl'; registered: "),
    # Runtime settings (jasrbench/settings.py) are not params: a profile that still sets one is told where they went.
    ("train.device", "cuda:1", "train.device: a runtime setting, not an experiment param (it changes speed, not "
                               "results): remove it and set JASRBENCH_DEVICE (see jasrbench/settings.py)"),
    ("models.jasrnet.train", {"checkpoint_every": 5}, "models.jasrnet.train.checkpoint_every: a runtime setting"),
    ("evaluate.batch_size", 64, "evaluate.batch_size: a runtime setting, not an experiment param (it changes speed, "
                                "not results): remove it and set JASRBENCH_EVAL_BATCH_SIZE (see jasrbench/settings.py)"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_TRAIN, ids=[c[0] for c in BAD_TRAIN])
def test_bad_train_settings_are_one_line_errors_naming_the_key(tmp_path, capsys, key, value, message):
    params = tiny_params(tmp_path / "prepared")  # never read: the error comes first
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    params_file = tmp_path / "params.yaml"  # edited by hand: `profile sync` has not run
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    line = _train(capsys, params_file, tmp_path / "out")
    assert line.startswith(f"jasrbench train: error: {params_file}: {message}"), line
    assert not (tmp_path / "out").exists()


def test_a_model_outside_the_profile_or_registry_is_named(tmp_path, capsys):
    params_file = write_params(tmp_path, tiny_params(tmp_path / "prepared"))
    assert _train(capsys, params_file, tmp_path / "out", model="jasrnet_xl") == (
        "jasrbench train: error: model 'jasrnet_xl' is not in the profile's `models`")


def test_truncated_or_foreign_checkpoints_are_named(prepared_root, tmp_path, capsys):
    params = tiny_params(prepared_root, epochs=1)
    params_file = write_params(tmp_path, params)
    done = tmp_path / "done"
    train("jasrnet", "300w", params, done, stop_after_steps=1)  # an unfinished run: last.pt only
    last = (done / "last.pt").read_bytes()
    capsys.readouterr()  # that run's progress output

    out = tmp_path / "out"
    out.mkdir()
    (out / "last.pt").write_bytes(last[: len(last) // 2])
    assert _train(capsys, params_file, out).startswith(
        f"jasrbench train: error: {out / 'last.pt'}: not a loadable checkpoint, truncated or not written by torch (")
    torch.save({"state_dict": {}}, out / "last.pt")
    assert _train(capsys, params_file, out) == f"jasrbench train: error: {out / 'last.pt'}: not a jasrbench checkpoint"

    # evaluate: a truncated model.pt, and a resume state given where a trained model belongs.
    model = tmp_path / "model.pt"
    model.write_bytes(last[: len(last) // 3])
    evaluate = ("evaluate", model, "--split", "300w/common", "--params", params_file, "--out", tmp_path / "eval")
    assert _run(capsys, *evaluate).startswith(
        f"jasrbench evaluate: error: {model}: not a loadable checkpoint, truncated or not written by torch (")
    shutil.copy2(done / "last.pt", model)
    assert _run(capsys, *evaluate) == (
        f"jasrbench evaluate: error: {model}: is a resume state (last.pt), not a trained model (model.pt)")
    assert _run(capsys, "evaluate", "jasrnet_xl", *evaluate[2:]).startswith(
        "jasrbench evaluate: error: unknown model 'jasrnet_xl'; available: ")
    assert not (tmp_path / "eval").exists()


def test_params_check_the_train_block_without_torch():
    """One schema (recipe.TrainConfig) serves the profile check and the stages, and it imports no torch:
    checking a train block must not pull the training path into the deps of every stage that loads params."""
    import subprocess
    import sys

    from jasrbench.paths import REPO_ROOT

    code = ("import sys, jasrbench.params as p; params = p.load_yaml(sys.argv[1] + '/pipelines/smoke.yaml'); "
            "from jasrbench.recipe import TrainConfig, check_train; check_train(params['train'], 'train'); "
            "cfg = TrainConfig.from_dict(p.model_train(params, 'jasrnet')); "
            "assert cfg.epochs >= 1; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    done = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


BAD_RUNTIME = [  # (variable, value, the message after "jasrbench train: error: ")
    ("JASRBENCH_DEVICE", "gpu1", "JASRBENCH_DEVICE: 'gpu1' is not a device; use auto, cpu, cuda or cuda:N"),
    ("JASRBENCH_COMPILE", "maybe", "JASRBENCH_COMPILE must be true, false or auto, got 'maybe'"),
    ("JASRBENCH_CHECKPOINT_EVERY", "-1", "JASRBENCH_CHECKPOINT_EVERY must be an integer >= 0, got '-1'"),
    ("JASRBENCH_EVAL_BATCH_SIZE", "0", "JASRBENCH_EVAL_BATCH_SIZE must be an integer >= 1, got '0'"),
    ("JASRBENCH_FIXED_ORDER_GRADS", "auto", "JASRBENCH_FIXED_ORDER_GRADS must be true or false, got 'auto'"),
]


@pytest.mark.parametrize(("var", "value", "message"), BAD_RUNTIME, ids=[c[0] for c in BAD_RUNTIME])
def test_bad_runtime_settings_are_one_line_errors_naming_the_variable(tmp_path, capsys, monkeypatch, var, value,
                                                                      message):
    params_file = write_params(tmp_path, tiny_params(tmp_path / "prepared"))  # never read: the error comes first
    monkeypatch.setenv(var, value)
    assert _train(capsys, params_file, tmp_path / "out") == f"jasrbench train: error: {message}"
    assert not (tmp_path / "out").exists()
