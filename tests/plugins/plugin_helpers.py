"""Helpers of the plugin tests (issue 27): the example plugin's names, a subprocess environment that sees an
installed plugin, and fake distributions whose entry points the registry of this process loads."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

from jasrbench.models import registry
from jasrbench.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "plugin"
DISTRIBUTION, VERSION, MODEL = "jasrbench-example-plugin", "0.1.0", "tinyjoint"


def plugin_env(site: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that sees the plugin (and this checkout's jasrbench first)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(site), env.get("PYTHONPATH", "")])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"JASRBENCH_DEVICE": "cpu", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"), **extra})
    return env


class FakePlugins:
    """Distributions written into a temporary folder (``*.dist-info`` with entry points, and their modules)
    whose entry points the registry of this process loads instead of the installed ones."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.monkeypatch = root, monkeypatch
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def module(self, name: str, source: str) -> Path:
        """Write module (or package ``a.b``) ``name`` with ``source``."""
        parts = name.split(".")
        folder = self.root.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, len(parts)):
            init = self.root.joinpath(*parts[:i], "__init__.py")
            if not init.exists():
                init.write_text("")
        path = folder / f"{parts[-1]}.py"
        path.write_text(textwrap.dedent(source))
        self.modules.append(name)
        return path

    def distribution(self, name: str, version: str, entry_points: dict[str, str]) -> None:
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\n{lines}\n")

    def entry_points(self):
        import importlib.metadata

        return [ep for dist in importlib.metadata.distributions(path=[str(self.root)])
                for ep in dist.entry_points if ep.group == registry.GROUP]
