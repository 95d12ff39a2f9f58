"""Fixtures of the pipeline tests (helpers live in ``pipeline_helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prepared_root(prepared_300w) -> Path:
    """The folder holding ``300w/`` (the prepared shared subset)."""
    return prepared_300w.out.parent


@pytest.fixture(autouse=True)
def _no_mlflow(monkeypatch):
    """Pipeline unit tests don't need MLflow (its server test lives in tests/report)."""
    monkeypatch.setenv("JASRBENCH_MLFLOW", "0")


