"""Fixtures of the plugin tests (issue 27): the example plugin installed into a throwaway folder, and a
registry of this process whose plugins the tests choose.

The example package (``examples/plugin``) is installed with ``pip install --no-deps --no-build-isolation
--target DIR`` from a copy of the folder (no network; the build leaves nothing in the repository), and the
subprocesses that use it get ``DIR`` on ``PYTHONPATH``. Nothing is installed into the suite's environment,
so every other test (pytest-xdist workers included) sees the same registry; the folder goes with the
session's temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from plugin_helpers import EXAMPLE, FakePlugins

from jasrbench.models import registry

# The pipeline tests' helpers (copy of the repository, a small raw 300W) serve the plugin's DAG test too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> SimpleNamespace:
    """The example plugin installed into a folder of its own: ``site`` (for PYTHONPATH) and its model file."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = base / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(source)], capture_output=True, text=True,
                         timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "jasr_example" / "model.py").is_file()
    return SimpleNamespace(site=site, model_file=site / "jasr_example" / "model.py")


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch) -> FakePlugins:
    """A registry of this process with the built-in models and only the plugins the test writes (restored after)."""
    fake = FakePlugins(tmp_path / "plugins", monkeypatch)
    fake.root.mkdir()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS", {})
    monkeypatch.setattr(registry, "_LOAD", {"state": "pending", "error": None, "current": None})
    monkeypatch.setattr(registry, "_entry_points", fake.entry_points)
    from jasrbench import deps

    deps._top_folder.cache_clear()
    yield fake
    deps._top_folder.cache_clear()
    for name in fake.modules:
        for key in [k for k in sys.modules if k == name.split(".")[0] or k.startswith(name.split(".")[0] + ".")]:
            sys.modules.pop(key, None)
