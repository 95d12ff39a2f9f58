"""One model on several processes (issue 13): ``torchrun -m jasrbench train`` with gloo on this CPU.

Every rank builds the one-process global batch and keeps its slice; DDP averages the slices'
gradients, so two processes train the model one process trains (up to float rounding: a
convolution over 2 faces sums in another order than over 4). A killed rank leaves the last
checkpoint behind, and the same torchrun command resumes from it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from pipeline_helpers import cli_env, tiny_params, write_params

from jasrbench import distributed
from jasrbench.batcher import Batcher
from jasrbench.data.augment import AugmentConfig
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError
from jasrbench.holdout import carve_validation


def test_python_m_jasrbench_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "jasrbench", "--version"], env=cli_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from jasrbench import __version__

    assert out.stdout.strip() == __version__


def test_rank_slices_concatenate_to_the_one_process_batch(prepared_root):
    split = load_split(prepared_root / "300w" / "train.npz")
    train_idx, _ = carve_validation(len(split), 0, 8, 24)
    mirror = torch.tensor(split.metadata["mirror_permutation"])
    augment = AugmentConfig(scale=(0.9, 1.1), rotation=30.0, flip=0.5, translate=0.03)

    def batcher(rank, world):
        return Batcher(split, train_idx, augment, mirror, torch.device("cpu"), seed=3, batch_size=6,
                       copies_per_epoch=1.0, rank=rank, world_size=world)

    one = batcher(0, 1)
    for epoch, step in ((0, 0), (1, 3)):
        whole = one.batch(epoch, step)
        assert len(whole["hr"]) == 6
        for world in (2, 3):
            parts = [batcher(r, world).batch(epoch, step) for r in range(world)]
            assert all(len(p["lr"]) == 6 // world for p in parts)
            for key, value in whole.items():
                assert torch.equal(torch.cat([p[key] for p in parts]), value), (key, world)
    with pytest.raises(ConfigError, match="4 equal per-process slices"):
        batcher(0, 4).batch(0, 0)
    assert distributed.shard(whole, 0, 1) is whole


def _train_cmd(params_file: Path, out: Path, results: Path, nproc: int) -> list[str]:
    bin_dir = Path(sys.executable).parent
    launch = ([str(bin_dir / "torchrun"), "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1
              else [sys.executable])
    return [*launch, "-m", "jasrbench", "train", "jasrnet", "--dataset", "300w", "--params", str(params_file),
            "--out", str(out), "--results", str(results), "--device", "cpu"]


def _rank_process(launcher: psutil.Process, rank: int) -> psutil.Process | None:
    for child in launcher.children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "jasrbench" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def test_torchrun_two_processes_match_one_and_resume_after_a_rank_is_killed(prepared_root, tmp_path):
    params = tiny_params(prepared_root, epochs=2)
    params_file = write_params(tmp_path, params)
    # A resume checkpoint after every step (a runtime setting: the same run); one thread per rank.
    env = {**cli_env(), "JASRBENCH_CHECKPOINT_EVERY": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run(_train_cmd(params_file, tmp_path / "one", tmp_path / "one_res", 1), env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    out, res = tmp_path / "two", tmp_path / "two_res"
    cmd = _train_cmd(params_file, out, res, 2)
    launcher = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    # Inside the second epoch (rank 0 wrote a mid-epoch last.pt), kill rank 1 hard.
    killed, deadline = None, time.monotonic() + 300
    while time.monotonic() < deadline and launcher.poll() is None:
        try:
            state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        except Exception:  # not there yet, or replaced while read
            state = None
        if state and state["epoch"] == 1 and state["step"] >= 1:
            killed = _rank_process(psutil.Process(launcher.pid), 1)
            if killed is not None:
                killed.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    stderr = launcher.communicate(timeout=120)[1]
    assert killed is not None, "the run finished before a rank could be killed mid-epoch:\n" + stderr[-3000:]
    assert launcher.returncode != 0, "torchrun must fail when one of its ranks is killed"
    assert (out / "last.pt").is_file() and not (res / "train.json").exists()

    resumed = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming jasrnet in epoch 2 after" in resumed.stderr
    assert "process group: 2 processes (gloo)" in resumed.stderr
    assert not (out / "last.pt").exists(), "a finished run retires its resume state"
    summary = json.loads((res / "train.json").read_text())
    assert summary["processes"] == 2 and summary["steps_per_epoch"] == 6

    a, b = pd.read_csv(tmp_path / "one_res" / "history.csv"), pd.read_csv(res / "history.csv")
    assert list(a["epoch"]) == list(b["epoch"]) == [1, 2]
    rel = ((b["loss_total"] - a["loss_total"]).abs() / a["loss_total"].abs()).max()
    assert rel < 0.01, (a["loss_total"].tolist(), b["loss_total"].tolist())
    assert (b["val_psnr"] - a["val_psnr"]).abs().max() < 0.05, (a["val_psnr"].tolist(), b["val_psnr"].tolist())
    # The weights too: had DDP left the slices' gradients unreduced (as static_graph does with these
    # models' dataclass outputs), each step would move them by up to lr apart, which 1% of the loss hides.
    w1 = torch.load(tmp_path / "one" / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    w2 = torch.load(out / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    diff = torch.cat([(w2[k].double() - w1[k].double()).abs().reshape(-1) for k in w1 if w1[k].is_floating_point()])
    lr = float(params["train"]["lr"])
    far = float((diff > lr / 10).double().mean())
    print(f"\nloss_total 1 process {a['loss_total'].tolist()}, 2 processes {b['loss_total'].tolist()}; "
          f"val_psnr {a['val_psnr'].tolist()} vs {b['val_psnr'].tolist()}; "
          f"weights: max |diff| {float(diff.max()):.2e}, {far:.2%} differ by > lr/10")
    assert far < 0.01
