"""A stage killed mid-write leaves no half-written output (DESIGN §6: temp file + rename)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import cli_env

from jasrbench.files import atomic_path, atomic_write_json, read_json
from jasrbench.paths import REPO_ROOT
from jasrbench.runtime import save_checkpoint

SLOW_WRITER = r"""
import sys, time
from jasrbench.files import atomic_path
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


# The real save_checkpoint (atomic_path + torch.save) with torch's serializer slowed down, so the
# kill lands mid-write.
SLOW_CHECKPOINT = r"""
import sys, time
from pathlib import Path
from jasrbench import runtime

def slow_save(obj, f):
    with open(f, "wb") as fh:
        for _ in range(1000):
            fh.write(b"x" * 65536)
            fh.flush()
            print("wrote", flush=True)
            time.sleep(0.01)

runtime.torch.save = slow_save
runtime.save_checkpoint(Path(sys.argv[1]), {"epoch": 2})
"""


def test_killed_checkpoint_write_leaves_nothing_dvc_would_cache(tmp_path):
    """SIGKILL while last.pt is written: the stage's output folder, as DVC caches it, holds only model.pt."""
    root = tmp_path / "repo"
    out = root / "models" / "smoke" / "jasrnet-300w"
    out.mkdir(parents=True)
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(REPO_ROOT / name, root / name)
    save_checkpoint(out / "model.pt", {"epoch": 1})  # a complete output of an earlier epoch
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CHECKPOINT, str(out / "last.pt")], env=cli_env(),
                            stdout=subprocess.PIPE)
    for _ in range(5):
        assert proc.stdout.readline().startswith(b"wrote")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = sorted(p.name for p in out.iterdir())  # the temporary file sorts first (a dot)
    assert len(left) == 2 and left[1] == "model.pt", left
    assert left[0].startswith(".last.pt.") and left[0].endswith(".tmp"), left

    git = subprocess.run(["git", "init", "-q"], cwd=root, capture_output=True)
    assert git.returncode == 0
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / left[0])], cwd=root, capture_output=True)
    assert ignored.returncode == 0, "git would see the temporary file"
    # DVC on its own (the repository's .gitignore ignores models/ for git, which `dvc add` refuses).
    shutil.rmtree(root / ".git")
    (root / ".gitignore").unlink()
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in ([dvc, "init", "--no-scm"], [dvc, "add", "models/smoke/jasrnet-300w"]):
        done = subprocess.run(cmd, cwd=root, env=cli_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-2000:])
    # What `dvc add` cached for the folder: its .dir manifest lists model.pt only.
    meta = (root / "models" / "smoke" / "jasrnet-300w.dvc").read_text()
    md5 = next(line.split(":", 1)[1].strip() for line in meta.splitlines() if line.strip().startswith("- md5:"))
    manifest = next((root / ".dvc" / "cache").rglob(md5[2:]))
    assert [e["relpath"] for e in json.loads(manifest.read_text())] == ["model.pt"]
