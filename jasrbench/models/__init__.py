"""Models: one file per architecture, all behind :class:`~jasrbench.models.base.FaceModel`.

``available()`` lists registered names; ``build(name, **overrides)`` builds one.
Importing this package imports every architecture module so that they register.
"""

from __future__ import annotations

import importlib

from .base import FaceModel, ModelOutput
from .registry import available, build, register, spec

# One module per architecture; each registers its names on import.
_ARCHITECTURES = ("bicubic",)

for _module in _ARCHITECTURES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["FaceModel", "ModelOutput", "available", "build", "register", "spec"]
