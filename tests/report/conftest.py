"""Fixtures of the report tests (helpers in ``report_helpers.py``): an MLflow server started with the
Makefile's command, and a small real results tree built once per session."""

from __future__ import annotations

import pytest
from report_helpers import ResultsTree, build_results_tree, start_mlflow_server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """``make mlflow-ui``'s command on a free port, temporary sqlite store; stopped at the end if still up."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def results_tree(mlflow_server, prepared_300w, w300_root, verify_root, tmp_path_factory) -> ResultsTree:
    """Tiny real models trained, evaluated, collected and reported (see ``build_results_tree``)."""
    return build_results_tree(mlflow_server, prepared_300w.out, w300_root, verify_root,
                              tmp_path_factory.mktemp("repo"))
