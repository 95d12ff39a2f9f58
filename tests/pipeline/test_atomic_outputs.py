"""A stage killed mid-write leaves no half-written output (DESIGN §6: temp file + rename)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from pipeline_helpers import cli_env

from jasrbench.io import atomic_path, atomic_write_json, read_json

SLOW_WRITER = r"""
import sys, time
from jasrbench.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:
        for _ in range(1000):
            fh.write(b"x" * 65536)
            fh.flush()
            print("wrote", flush=True)
            time.sleep(0.01)
"""


def test_killed_writer_leaves_the_previous_output_intact(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"psnr": 23.1})
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], env=cli_env(), stdout=subprocess.PIPE)
    for _ in range(5):  # let it write a few chunks into its temporary file
        assert proc.stdout.readline().startswith(b"wrote")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert read_json(target) == {"psnr": 23.1}
    # What a hard kill leaves is the hidden temporary file, never a half-written declared output.
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert leftovers and all(n.startswith(".summary.json.") and n.endswith(".tmp") for n in leftovers)


def test_exception_inside_atomic_path_removes_the_temporary_file(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_killed_prepare_leaves_no_partial_out(w300_root, tmp_path):
    out = tmp_path / "prepared" / "300w"
    proc = subprocess.Popen([sys.executable, "-m", "jasrbench.cli", "prepare", "300w", "--raw", str(w300_root),
                             "--out", str(out)], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it while it is working (its temporary folder beside --out exists), before it finishes.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.parent.exists() and any(out.parent.iterdir()):
            time.sleep(1.0)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "prepare finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    assert not (out / "summary.json").exists()
