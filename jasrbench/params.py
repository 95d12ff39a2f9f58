"""``params.yaml`` and profiles: loading and checking the parameters every stage reads (DESIGN §6).

A *profile* (``pipelines/<name>.yaml``; ``paper``, ``cpu``, ``smoke``) is a complete parameter set;
profiles change numbers, never code paths. ``params.yaml`` is a copy of the selected one. This module
loads either and checks its structure, its train block (:mod:`jasrbench.recipe`, one schema) and its
model entries, naming the key of a bad value. The ``runs`` section and the stage list it makes:
:mod:`jasrbench.dag`; selecting a profile (the ``profile`` command): :mod:`jasrbench.profiles`.
Runtime settings are not params (:mod:`jasrbench.settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .recipe import check_train, reject_runtime_settings

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "pipelines"
REQUIRED_SECTIONS = ("profile", "seed", "data", "train", "evaluate", "models", "runs")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def validate(params: dict[str, Any], where: str = PARAMS_FILE) -> None:
    """Check the profile's structure, its train block and model overrides, and that every model is registered.

    The ``runs`` section (the DAG) is checked against the code by :func:`jasrbench.dag.check_runs`
    (``jasrbench profile use|check``, ``collect``, ``launch``): the stages need only their own entry.
    """
    missing = [k for k in REQUIRED_SECTIONS if k not in params]
    if missing:
        raise ConfigError(f"{where}: missing sections {missing}")
    from .models import available

    names = set(available())
    datasets = params["data"].get("datasets", {})
    protocol = params["data"].get("protocol")
    if protocol is not None:
        from .data.protocols import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise ConfigError(f"{where}: data.protocol: unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    check_train(params["train"], f"{where}: train")
    reject_runtime_settings(params["evaluate"] or {}, "evaluate", f"{where}: evaluate")
    for model, entry in params["models"].items():
        base = (entry or {}).get("arch", model)
        if base not in names:
            raise ConfigError(f"{where}: models.{model}: unknown model {base!r}; registered: {sorted(names)}")
        if (entry or {}).get("train"):
            check_train(model_train(params, model), f"{where}: models.{model}.train", only=entry["train"])
        if "train_on" in (entry or {}):
            raise ConfigError(f"{where}: models.{model}.train_on: replaced by the `runs` section "
                              f"(`jasrbench profile runs {model} --on DATASET=SPLIT,...` prints its entries)")
    for model, entry in params["models"].items():
        wanted = ((entry or {}).get("train") or {}).get("degradation")
        if wanted is not None:
            from .data.protocols import PROTOCOLS

            if wanted not in PROTOCOLS or not PROTOCOLS[wanted].per_face:
                known = sorted(n for n, p in PROTOCOLS.items() if p.per_face)
                raise ConfigError(f"{where}: models.{model}.train.degradation: unknown camera degradation "
                                  f"{wanted!r}; choose one of {', '.join(known)}")
    for name, entry in datasets.items():
        if not isinstance((entry or {}).get("skip_bad"), bool):
            raise ConfigError(f"{where}: data.datasets.{name}.skip_bad: required, true or false "
                              "(dvc.yaml's prepare loop reads it)")


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """The active parameters (``params.yaml`` at the repository root by default)."""
    path = Path(path) if path is not None else Path.cwd() / PARAMS_FILE
    params = load_yaml(path)
    validate(params, str(path))
    return params


def load_profile(name: str, root: str | Path | None = None) -> dict[str, Any]:
    root = Path.cwd() if root is None else root
    path = Path(root) / PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(root) / PROFILES_DIR).glob("*.yaml"))
        raise ConfigError(f"unknown profile {name!r} ({path} not found); profiles: {known}")
    params = load_yaml(path)
    if params.get("profile") != name:
        raise ConfigError(f"{path}: its `profile:` says {params.get('profile')!r}, expected {name!r}")
    validate(params, str(path))
    return params


def set_dotted(params: dict[str, Any], dotted: str, value: Any) -> None:
    node = params
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a mapping")
    node[keys[-1]] = value


def model_entry(params: dict[str, Any], model: str) -> dict[str, Any]:
    try:
        entry = params["models"][model] or {}
    except KeyError:
        raise ConfigError(f"model {model!r} is not in the profile's `models`") from None
    return {"arch": entry.get("arch", model), "overrides": dict(entry.get("overrides") or {}),
            "tables": list(entry.get("tables") or [])}




def model_train(params: dict[str, Any], model: str) -> dict[str, Any]:
    """The train block ``model`` runs with: the profile's ``train`` under the model's ``train`` overrides."""
    if model not in params["models"]:
        raise ConfigError(f"model {model!r} is not in the profile's `models`")
    return {**params["train"], **((params["models"][model] or {}).get("train") or {})}
