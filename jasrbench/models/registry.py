"""Model registry: every model of every table is reachable by name.

``register(name, **defaults)`` decorates a builder (a ``FaceModel`` subclass or
a function returning one); the same class can be registered several times
under different names with different defaults (the JASRNet ablations).
``build(name, **overrides)`` merges the overrides over the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .base import FaceModel


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., FaceModel]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, description: str = "", **defaults: Any):
    """Decorator: register ``builder`` under ``name`` with default keyword arguments."""

    def deco(builder):
        if name in _REGISTRY:
            raise ConfigError(f"model name {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, dict(defaults), description)
        return builder

    return deco


def available() -> list[str]:
    """Sorted names of every registered model."""
    return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available())}") from None


def build(name: str, **overrides: Any) -> FaceModel:
    """Build the model registered as ``name``, with ``overrides`` over its defaults."""
    s = spec(name)
    kwargs = {**s.defaults, **overrides}
    try:
        model = s.builder(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad arguments {sorted(overrides)} ({exc})") from exc
    model.registry_name = name
    return model
