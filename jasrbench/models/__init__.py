"""Models: one file per architecture, all behind :class:`~jasrbench.models.base.FaceModel`.

``available()`` lists registered names; ``build(name, **overrides)`` builds one.
Importing this package imports every architecture module in this folder so
that each registers its names (a new file registers itself; nothing to edit).
Models of other installed packages join by entry points of the group
``jasrbench.models``, loaded on the registry's first use (:mod:`.registry`, issue 27).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import FaceModel, ModelOutput
from .registry import PluginError, PluginInfo, available, build, plugin_of, plugins, register, spec

_NOT_ARCHITECTURES = {"base", "registry", "blocks", "adversarial"}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name not in _NOT_ARCHITECTURES and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["FaceModel", "ModelOutput", "PluginError", "PluginInfo", "available", "build", "plugin_of",
           "plugins", "register", "spec"]
