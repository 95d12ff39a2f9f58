"""``jasrbench model check NAME`` (issue 27 item 3): one line per check, and a model that breaks the FaceModel
contract is an error naming the model and the failed check."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from plugin_helpers import DISTRIBUTION, MODEL, VERSION, plugin_env
from torch import nn

from jasrbench import cli
from jasrbench.model_check import CHECKS, ModelCheckError, check_model, run_checks
from jasrbench.models import FaceModel, ModelOutput, registry


class _Joint(FaceModel):
    """A correct tiny joint model; the broken ones below change one thing each."""

    predicts_sr = True
    predicts_landmarks = True

    def __init__(self, num_points: int = 68, alpha: float = 1.0):
        super().__init__(num_points, alpha)
        self.sr_conv = nn.Conv2d(3, 3, 3, padding=1)
        self.hm_conv = nn.Conv2d(3, num_points + 1, 3, padding=1)

    def forward(self, lr):
        up = self.upsample(lr)
        return ModelOutput(sr=up + self.sr_conv(up), heatmaps=[self.hm_conv(lr)])


class _WrongSize(_Joint):
    def forward(self, lr):
        out = super().forward(lr)
        return ModelOutput(sr=F.interpolate(out.sr, size=(64, 64)), heatmaps=out.heatmaps)


class _NoLandmarks(_Joint):
    def forward(self, lr):
        return ModelOutput(sr=super().forward(lr).sr, heatmaps=None)


class _NaNLoss(_Joint):
    def loss(self, output, batch):
        losses = super().loss(output, batch)
        return {**losses, "total": losses["total"] * float("nan")}


class _Unreached(_Joint):
    def __init__(self, num_points: int = 68, alpha: float = 1.0):
        super().__init__(num_points, alpha)
        self.spare = nn.Linear(4, 4)  # in no forward path: DDP without the unused search would hang on it


class _Nondeterministic(_Joint):
    def forward(self, lr):
        out = super().forward(lr)
        return ModelOutput(sr=out.sr + 1e-3 * torch.rand_like(out.sr), heatmaps=out.heatmaps)


@pytest.fixture
def broken(fake_plugins):
    for name, cls in (("good_joint", _Joint), ("wrong_size", _WrongSize), ("no_landmarks", _NoLandmarks),
                      ("nan_loss", _NaNLoss), ("unreached", _Unreached), ("nondeterministic", _Nondeterministic)):
        registry.register(name)(cls)


def test_a_correct_model_passes_every_check(broken):
    results = run_checks("good_joint", device="cpu")
    assert [r.name for r in results] == list(CHECKS)
    assert all(r.ok for r in results), [r.line() for r in results]
    cost = next(r for r in results if r.name == "cost").detail
    assert "parameters" in cost and "GFLOPs" in cost


@pytest.mark.parametrize("model, check, why", [
    ("wrong_size", "shapes", "sr 2×3×64×64, expected 2×3×128×128"),
    ("no_landmarks", "outputs", "missing landmark output"),
    ("nan_loss", "loss", "nan (not finite)"),
    ("unreached", "loss", "does not reach 2 of 6 trainable parameters: spare.weight, spare.bias"),
    ("nondeterministic", "state_dict", "gives other outputs"),
])
def test_a_broken_contract_names_the_model_and_the_check(broken, model, check, why):
    with pytest.raises(ModelCheckError) as err:
        check_model(model, device="cpu")
    message = str(err.value)
    assert message.startswith(f"model {model!r} failed check {check!r} on cpu: "), message
    assert why in message, message


def test_the_command_prints_one_line_per_check_and_exits_1_naming_the_failure(broken, capsys):
    assert cli.main(["model", "check", "no_landmarks", "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    lines = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert [(w[0], w[1]) for w in lines] == [("ok", "build"), ("ok", "shapes"), ("FAIL", "outputs"), ("FAIL", "loss"),
                                             ("ok", "state_dict"), ("ok", "seed"), ("ok", "eval_batch1"),
                                             ("ok", "cost")], out
    assert "error: model 'no_landmarks' failed check 'outputs' on cpu" in err, err
    assert cli.main(["model", "check", "good_joint", "--device", "cpu", "--set", "alpha=0.5"]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_model_check_of_the_installed_example_plugin(plugin_site):
    """The example package, installed by pip: checked on the CPU in seconds (and CUDA where present)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jasrbench", "model", "check", MODEL], env=plugin_env(plugin_site.site),
                          capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"plugin: {DISTRIBUTION} {VERSION}" in done.stdout, done.stdout
    for check in CHECKS:
        assert any(line.split()[:2] == ["ok", check] for line in done.stdout.splitlines()), (check, done.stdout)
    assert "on cpu:" in done.stdout and (("on cuda:" in done.stdout) == torch.cuda.is_available())
    print(f"\nmodel check {MODEL}: {seconds:.1f} s (process start included)")
    assert seconds < 120
