"""Model registry: every model of every table is reachable by name.

``register(name, **defaults)`` decorates a builder (a ``FaceModel`` subclass or
a function returning one); the same class can be registered several times
under different names with different defaults (the JASRNet ablations).
``build(name, **overrides)`` merges the overrides over the defaults.

Models from other installed packages (issue 27) come in by entry points of the group
``jasrbench.models`` (:data:`GROUP`)::

    [project.entry-points."jasrbench.models"]
    mymethod = "mypkg.model:MyModel"      # a FaceModel subclass (or a function returning one)
    mypkg = "mypkg.models"                # or a module whose import calls jasrbench.models.register(...)

They are loaded lazily, once, on the first use of the registry (:func:`available`, :func:`spec`,
:func:`build`). A plugin whose import fails, or whose name is already taken (by a built-in model or
another plugin), is a :class:`PluginError` naming the entry point, its distribution and the cause,
raised by every later use of the registry until it is fixed or uninstalled.
:func:`plugin_of` gives a plugin model's distribution and version (recorded in ``train.json``, MLflow
and the report's note on its row); ``available(with_package=True)`` lists every name with its package.
"""

from __future__ import annotations

import importlib.metadata
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

GROUP = "jasrbench.models"  # the entry-point group of plugin models
BUILTIN_PACKAGE = "jasrbench"


class PluginError(ConfigError):
    """A plugin model that cannot join the registry: its import failed, or its name is taken."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin model comes from: its entry point and the distribution that declares it."""

    name: str  # the registry name
    entry_point: str  # ``name = module:attr`` as declared
    distribution: str  # e.g. jasrbench-example-plugin
    version: str

    @property
    def package(self) -> str:
        return f"{self.distribution} {self.version}"

    def as_dict(self) -> dict[str, str]:
        return {"distribution": self.distribution, "version": self.version, "entry_point": self.entry_point}


_PLUGINS: dict[str, PluginInfo] = {}
_LOAD: dict[str, Any] = {"state": "pending", "error": None, "current": None}  # pending | loading | done


def register(name: str, description: str = "", **defaults: Any):
    """Decorator: register ``builder`` under ``name`` with default keyword arguments."""

    def deco(builder):
        current: PluginInfo | None = _LOAD["current"]
        if name in _REGISTRY:
            if current is not None:
                raise _clash(name, current)
            raise ConfigError(f"model name {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, dict(defaults), description)
        if current is not None:  # registered while a plugin's entry point is being loaded
            _PLUGINS[name] = PluginInfo(name, current.entry_point, current.distribution, current.version)
        return builder

    return deco


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of :data:`GROUP` (the tests replace this function)."""
    return list(importlib.metadata.entry_points(group=GROUP))


def _describe(ep: importlib.metadata.EntryPoint) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    name = (dist.metadata["Name"] if dist is not None else None) or "unknown distribution"
    version = (dist.version if dist is not None else None) or "unknown version"
    return PluginInfo(ep.name, f"{ep.name} = {ep.value}", name, version)


def _owner(name: str) -> str:
    """Who registered ``name``: ``the built-in model 'x' (jasrbench.models.x)`` or the plugin's entry point."""
    if name in _PLUGINS:
        p = _PLUGINS[name]
        return f"plugin model {name!r} (entry point {p.entry_point!r} of {p.package})"
    return f"the built-in model {name!r} ({getattr(_REGISTRY[name].builder, '__module__', '?')})"


def _clash(name: str, plugin: PluginInfo) -> PluginError:
    return PluginError(f"plugin model {name!r} (entry point {plugin.entry_point!r} of {plugin.package}, group "
                       f"{GROUP}) clashes with {_owner(name)}: rename the entry point, or uninstall one of them "
                       f"(pip uninstall {plugin.distribution})")


def _is_builder(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, FaceModel) or (callable(obj) and not isinstance(obj, type))


def _load_one(ep: importlib.metadata.EntryPoint) -> None:
    info = _describe(ep)
    before = set(_REGISTRY)
    _LOAD["current"] = info
    try:
        try:
            obj = ep.load()
        except PluginError:
            raise
        except Exception as exc:  # any import-time failure of someone else's package, named
            raise PluginError(f"plugin entry point {info.entry_point!r} of {info.package} (group {GROUP}) failed to "
                              f"import: {type(exc).__name__}: {exc}") from exc
        if ep.attr is None:  # a module whose import registers its models
            if not set(_REGISTRY) - before:
                raise PluginError(f"plugin entry point {info.entry_point!r} of {info.package} names a module that "
                                  "registered no model (call jasrbench.models.register in it, or point the entry "
                                  "point at a FaceModel subclass: module:Class)")
            return
        if not _is_builder(obj):
            raise PluginError(f"plugin entry point {info.entry_point!r} of {info.package}: {ep.attr} is a "
                              f"{type(obj).__name__}, not a FaceModel subclass or a function returning one")
        if ep.name in _REGISTRY:
            if _REGISTRY[ep.name].builder is obj and ep.name not in before:
                return  # its module registered it under the entry point's name while being imported
            raise _clash(ep.name, info)
        register(ep.name, description=(obj.__doc__ or "").strip().split("\n")[0])(obj)
    finally:
        _LOAD["current"] = None


def load_plugins() -> None:
    """Load every plugin entry point once (later calls re-raise the first failure, or do nothing)."""
    if _LOAD["state"] == "done":
        if _LOAD["error"] is not None:
            raise _LOAD["error"]
        return
    if _LOAD["state"] == "loading":  # a plugin module using the registry while it is imported
        return
    _LOAD["state"] = "loading"
    try:
        for ep in sorted(_entry_points(), key=lambda e: (e.name, e.value)):
            _load_one(ep)
    except PluginError as exc:
        _LOAD["error"] = exc
        raise
    finally:
        _LOAD["state"] = "done"


def plugins() -> dict[str, PluginInfo]:
    """Every plugin model by registry name."""
    load_plugins()
    return dict(_PLUGINS)


def plugin_of(name: str) -> PluginInfo | None:
    """The plugin that provides model ``name`` (None for a built-in model)."""
    load_plugins()
    return _PLUGINS.get(name)


def available(with_package: bool = False) -> list[str] | dict[str, str]:
    """Sorted names of every registered model; ``with_package``: name → the package that provides it
    (``jasrbench`` for built-in models, ``DISTRIBUTION VERSION`` for plugins)."""
    load_plugins()
    if with_package:
        return {n: (_PLUGINS[n].package if n in _PLUGINS else BUILTIN_PACKAGE) for n in sorted(_REGISTRY)}
    return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
    load_plugins()
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
