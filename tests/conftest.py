"""Shared fixtures: the real test faces (DESIGN §2) and small helpers.

The test data root comes from ``JASRBENCH_TEST_DATA`` (default
``../shared/datasets``). Where it is missing, tests that need it skip — except
under CI (``CI`` or ``JASRBENCH_REQUIRE_TEST_DATA`` set), where a missing
folder is a failure: a CI run that skipped its real-data tests proved nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from jasrbench.paths import TEST_DATA_ENV, test_data_root

# The tests train and evaluate on the CPU even where a GPU is present (a runtime setting, jasrbench/settings.py;
# subprocesses inherit it). Tests of the CUDA path ask for their device explicitly.
os.environ.setdefault("JASRBENCH_DEVICE", "cpu")

# The longest modules first (`make test` runs pytest-xdist with --dist loadfile, which hands out whole
# files in collection order): the smoke DAG alone is about half the suite, so it must not start last.
LONGEST_FIRST = ("pipeline/test_smoke_dag.py", "metrics/test_verification.py", "pipeline/test_launch.py",
                 "pipeline/test_exp_queue.py")


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent

    def rank(item) -> int:
        name = Path(item.fspath).relative_to(tests).as_posix() if Path(item.fspath).is_relative_to(tests) else ""
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


def _require() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("JASRBENCH_REQUIRE_TEST_DATA"))


def _data_dir(*parts: str) -> Path:
    path = test_data_root().joinpath(*parts)
    if not path.exists():
        message = f"test data {path} is missing (set {TEST_DATA_ENV} to the folder holding 300W/, lfw/, verify/)"
        if _require():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_dir()


@pytest.fixture(scope="session")
def w300_root() -> Path:
    """The real 300W subset in 300W's official layout."""
    return _data_dir("300W")


@pytest.fixture(scope="session")
def verify_root() -> Path:
    """Real identity-labelled photos in LFW's layout (stands in for LFW)."""
    return _data_dir("verify")


@pytest.fixture(scope="session")
def lfw_pairs_file() -> Path:
    """LFW's official pairs.txt (View 2)."""
    return _data_dir("lfw", "pairs.txt")


# A folder holding 300w/ that `prepare 300w` already wrote from the shared subset (benchmarks/gpu_check.sh
# passes its own, so the CUDA tests do not prepare the faces a second time).
PREPARED_ENV = "JASRBENCH_TEST_PREPARED"


@pytest.fixture(scope="session")
def prepared_300w(w300_root, tmp_path_factory):
    """The whole shared 300W subset prepared once per session (``jasrbench prepare 300w``), or ``$JASRBENCH_TEST_PREPARED``'s."""
    from jasrbench.data.prepare import prepare

    if os.environ.get(PREPARED_ENV):
        from jasrbench.files import read_json

        out = Path(os.environ[PREPARED_ENV]) / "300w"
        if not (out / "summary.json").is_file():
            pytest.fail(f"{PREPARED_ENV}={os.environ[PREPARED_ENV]}: no 300w/summary.json there (run `jasrbench prepare 300w`)")
        return SimpleNamespace(out=out, summary=read_json(out / "summary.json"), seconds=0.0)
    out = tmp_path_factory.mktemp("prepared") / "300w"
    start = time.perf_counter()
    summary = prepare("300w", w300_root, out)
    seconds = time.perf_counter() - start
    print(f"\nprepare 300w (shared subset, {sum(summary['faces'].values())} faces): {seconds:.1f} s")
    return SimpleNamespace(out=out, summary=summary, seconds=seconds)
