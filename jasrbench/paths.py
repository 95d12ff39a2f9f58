"""Where things live: the repository root and the real test faces.

The real faces the tests (and the ``smoke``/``cpu`` profiles) use are read
from one setting: the environment variable ``JASRBENCH_TEST_DATA``, falling
back to ``../shared/datasets`` beside the repository root (DESIGN §2).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
TEST_DATA_ENV = "JASRBENCH_TEST_DATA"


def test_data_root() -> Path:
    """The folder holding ``300W/``, ``lfw/`` and ``verify/`` test data."""
    env = os.environ.get(TEST_DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "datasets").resolve()
