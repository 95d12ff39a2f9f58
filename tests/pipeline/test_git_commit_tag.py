"""MLflow's git_commit tag: -dirty only when tracked source differs, not the files every repro rewrites."""

from __future__ import annotations

import subprocess

from jasrbench.tracking import git_commit


def _git(root, *args):
    env = {"GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@localhost", "GIT_COMMITTER_NAME": "ci",
           "GIT_COMMITTER_EMAIL": "ci@localhost", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_dirty_only_when_tracked_source_differs(tmp_path):
    for name, text in {"jasrbench/train.py": "x = 1\n", "dvc.lock": "schema: '2.0'\n",
                       "results/smoke/metrics.json": "{}\n", "untracked_later.txt": None}.items():
        if text is not None:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "snapshot")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    # What `dvc repro` rewrites, and an untracked file: still the clean commit (also from a subfolder).
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (tmp_path / "results" / "smoke" / "metrics.json").write_text('{"models": {}}\n')
    (tmp_path / "untracked_later.txt").write_text("scratch\n")
    assert git_commit(tmp_path) == head
    assert git_commit(tmp_path / "jasrbench") == head
    # A change to tracked source: dirty.
    (tmp_path / "jasrbench" / "train.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{head}-dirty"
