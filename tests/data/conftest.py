"""Fixtures of the data-layer tests: the real 300W faces prepared once per session, and small
real-face roots. Builders of the datasets absent from ``../shared/datasets`` (HELEN-194, AFLW, LFW
photographs) in their official formats live in ``datafixtures.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datafixtures import copy_face, real_faces



@pytest.fixture(scope="session")
def slice_300w_root(w300_root, tmp_path_factory) -> Path:
    """A small 300W root (6 faces per present subset, symlinked) for the fast end-to-end tests."""
    root = tmp_path_factory.mktemp("slice") / "300W"
    for subset in ("lfpw/trainset", "helen/trainset", "lfpw/testset", "helen/testset"):
        for img, pts in real_faces(w300_root, subset, 6):
            (root / subset).mkdir(parents=True, exist_ok=True)
            (root / subset / img.name).symlink_to(img.resolve())
            (root / subset / pts.name).symlink_to(pts.resolve())
    return root


@pytest.fixture()
def small_300w(w300_root, tmp_path) -> Path:
    """A writable 300W root with three real LFPW training faces (copies): add bad files to it."""
    root = tmp_path / "300W"
    for img, pts in real_faces(w300_root, "lfpw/trainset", 3):
        copy_face(img, pts, root / "lfpw" / "trainset")
    return root
