"""Profiles and ``params.yaml``: every knob the DAG reads, in one place (DESIGN §6).

A *profile* (``pipelines/<name>.yaml``; ``paper``, ``cpu``, ``smoke``) is a complete parameter
set; profiles change numbers, never code paths. ``params.yaml`` is a copy of the selected one,
and its ``runs`` section *is* the DAG: one entry per pretrain/train/evaluate stage, written out,
never derived, so ``dvc.yaml``'s ``foreach`` loops read it directly and ``dvc exp run -S`` edits
it like any param. Each entry names its model, data and the model-specific code files (and
pretrained weights) the stage depends on; :func:`validate` checks them against the code and
names the value a wrong field must have, so an edit cannot leave stale dependencies. Paths are
relative to the repository root (DVC's working directory). Schema: ``pipelines/paper.yaml``;
``jasrbench profile use|runs|show`` is the CLI. Runtime settings are not params
(:mod:`jasrbench.settings`).
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .files import atomic_write_text
from .paths import PACKAGE_DIR, REPO_ROOT

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "pipelines"
_HEADER = (
    "# The parameters DVC reads. Selected profile: {name} (from pipelines/{name}.yaml).\n"
    "# Switch profiles with `jasrbench profile use NAME` (or `make reproduce PROFILE=NAME`).\n"
    "# `runs` is the DAG (one entry per stage; `jasrbench profile runs` prints new entries).\n"
)
REQUIRED_SECTIONS = ("profile", "seed", "data", "train", "evaluate", "models", "runs")
RUN_SECTIONS = ("pretrain", "train", "evaluate", "evaluate_untrained")


def run_id(model: str, dataset: str) -> str:
    """Name of one training run (a DVC stage key): ``<model>-<dataset>``."""
    return f"{model}-{dataset}"


def eval_id(run: str, split: str) -> str:
    """Name of one evaluation (a DVC stage key): ``<run>-<split with / → _>``."""
    return f"{run}-{split.replace('/', '_')}"


def split_file(prepared: str, split: str) -> str:
    dataset, _, name = split.partition("/")
    if not dataset or not name:
        raise ConfigError(f"split {split!r} must be written DATASET/SPLIT (e.g. 300w/common)")
    return f"{prepared}/{dataset}/{name}.npz"


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
    """Check the profile's structure and that every model name is registered."""
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
            check_train({**params["train"], **entry["train"]}, f"{where}: models.{model}.train", only=entry["train"])
        if "train_on" in (entry or {}):
            raise ConfigError(f"{where}: models.{model}.train_on: replaced by the `runs` section "
                              f"(`jasrbench profile runs {model} --on DATASET=SPLIT,...` prints its entries)")
    for name, entry in datasets.items():
        if not isinstance((entry or {}).get("skip_bad"), bool):
            raise ConfigError(f"{where}: data.datasets.{name}.skip_bad: required, true or false "
                              "(dvc.yaml's prepare loop reads it)")
    check_runs(params, where)


def table_run_dataset(split: str, trained_on: list[str]) -> str:
    """Which training dataset's run a model's row shows for ``split`` when several runs evaluate it.

    The run trained on the split's own dataset (300w/common → the 300w run); otherwise the only
    run there is. Two runs from other datasets are ambiguous: an error, never a choice by the
    profile's order. ``collect`` keeps every run in ``metrics.json``'s ``runs`` either way.
    """
    if len(trained_on) == 1:
        return trained_on[0]
    own = split.partition("/")[0]
    if own in trained_on:
        return own
    raise ConfigError(f"split {split!r} is evaluated by runs trained on {', '.join(trained_on)} and none on {own}: "
                      "the tables need one run per model and split")


# --- the train section: checked when params are loaded, before any stage does work (issue 10) ----------
_SELECT = ("auto", "psnr", "nme")


def _dataclass_keys(module: str, name: str) -> frozenset[str]:
    """Field names of dataclass ``name`` in ``jasrbench/<module>.py``, read from its source.

    Checking a profile must not import torch or the training code (every stage loads params, and
    the stages' declared code deps would all grow by the training path); reading the fields from
    the source keeps the accepted keys those of ``recipe.TrainConfig`` / ``data.augment.AugmentConfig``.
    """
    import ast

    tree = ast.parse((PACKAGE_DIR / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return frozenset(n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))


def _number(value: Any, key: str, *, integer: bool = False) -> float:
    try:  # YAML 1.1 reads "1e-3" (no dot) as a string: numbers are coerced, not type-checked
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if integer and number != int(number):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}") from None
    return number


def _at_least(value: Any, key: str, low: float, *, integer: bool = False, strict: bool = False) -> None:
    number = _number(value, key, integer=integer)
    if number < low or (strict and number == low):
        raise ConfigError(f"{key} must be {'>' if strict else '>='} {low:g}, got {value!r}")


# Runtime settings (jasrbench/settings.py: speed, not results) that older profiles kept as params, and the
# environment variable each now comes from. Written out here: every stage loads params, and importing
# settings.py would make it a code dependency of all of them.
RUNTIME_SETTINGS = {
    "train.device": "JASRBENCH_DEVICE", "train.compile": "JASRBENCH_COMPILE",
    "train.checkpoint_every": "JASRBENCH_CHECKPOINT_EVERY", "train.eval_batch_size": "JASRBENCH_EVAL_BATCH_SIZE",
    "train.fixed_order_grads": "JASRBENCH_FIXED_ORDER_GRADS",
    "evaluate.device": "JASRBENCH_DEVICE", "evaluate.batch_size": "JASRBENCH_EVAL_BATCH_SIZE",
}


def reject_runtime_settings(section: dict[str, Any], kind: str, key: str) -> None:
    """A ConfigError naming ``key.FIELD`` and its variable when a profile's ``kind`` section
    (``train``/``evaluate``) still sets a runtime setting."""
    for field in sorted(section or {}):
        var = RUNTIME_SETTINGS.get(f"{kind}.{field}")
        if var is not None:
            raise ConfigError(f"{key}.{field}: a runtime setting, not an experiment param (it changes speed, "
                              f"not results): remove it and set {var} (see jasrbench/settings.py)")


def check_train(train: dict[str, Any], key: str, only: dict[str, Any] | None = None) -> None:
    """One-line ConfigError naming ``key.FIELD`` for an unknown or out-of-range training setting.

    ``only``: check just these fields (a model's ``train`` overrides, merged over the profile's).
    """
    reject_runtime_settings(only if only is not None else train, "train", key)
    known = _dataclass_keys("recipe", "TrainConfig")
    for name in sorted(set(only if only is not None else train) - known):
        raise ConfigError(f"{key}.{name}: unknown key; known: {', '.join(sorted(known))}")
    fields = set(only if only is not None else train)
    rules = {"epochs": (1, True, False), "batch_size": (1, True, False), "val_faces": (1, True, False),
             "lr": (0, False, True),
             "weight_decay": (0, False, False), "gamma": (0, False, True), "copies_per_epoch": (0, False, True),
             "adversarial_weight": (0, False, False), "perceptual_weight": (0, False, False),
             "discriminator_width": (1, True, False), "check_every": (1, True, False)}
    for name, (low, integer, strict) in rules.items():
        if name in fields and name in train:
            _at_least(train[name], f"{key}.{name}", low, integer=integer, strict=strict)
    if "max_faces" in fields and train.get("max_faces") is not None:
        _at_least(train["max_faces"], f"{key}.max_faces", 1, integer=True)
    if "milestones" in fields:
        if not isinstance(train["milestones"], list):
            raise ConfigError(f"{key}.milestones must be a list of epochs, got {train['milestones']!r}")
        for m in train["milestones"]:
            _at_least(m, f"{key}.milestones", 1, integer=True)
    if "betas" in fields:
        betas = train["betas"]
        if not isinstance(betas, list) or len(betas) != 2 or not all(0 <= _number(b, f"{key}.betas") < 1 for b in betas):
            raise ConfigError(f"{key}.betas must be two numbers in [0, 1), got {betas!r}")
    if "select" in fields and train["select"] not in _SELECT:
        raise ConfigError(f"{key}.select must be one of {', '.join(_SELECT)}, got {train['select']!r}")
    # The fast path's switches (issue 12; jasrbench/runtime.py, jasrbench/step.py).
    if "precision" in fields and train["precision"] not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"{key}.precision must be one of auto, fp32, bf16, got {train['precision']!r}")
    if "augment" in fields:
        augment = train["augment"] or {}
        if not isinstance(augment, dict):
            raise ConfigError(f"{key}.augment must be a mapping, got {augment!r}")
        allowed = _dataclass_keys("data.augment", "AugmentConfig")
        for name in sorted(set(augment) - allowed):
            raise ConfigError(f"{key}.augment.{name}: unknown key; known: {', '.join(sorted(allowed))}")
        if "scale" in augment:
            scale = augment["scale"]
            if (not isinstance(scale, list) or len(scale) != 2
                    or not 0 < _number(scale[0], f"{key}.augment.scale") <= _number(scale[1], f"{key}.augment.scale")):
                raise ConfigError(f"{key}.augment.scale must be [low, high] with 0 < low <= high, got {scale!r}")
        for name in ("rotation", "translate"):
            if name in augment:
                _at_least(augment[name], f"{key}.augment.{name}", 0)
        if "flip" in augment and not 0 <= _number(augment["flip"], f"{key}.augment.flip") <= 1:
            raise ConfigError(f"{key}.augment.flip must be a probability in [0, 1], got {augment['flip']!r}")


def _expected_train(params: dict[str, Any], model: str, dataset: str) -> dict[str, Any]:
    """The ``runs.train`` entry that trains ``model`` on ``dataset`` (code slots and init from the code)."""
    from .models import spec
    from .pretrained_weights import pretrained_file, settings as pretrain_settings

    arch = (params["models"].get(model) or {}).get("arch", model)
    code = _model_code_slots(arch)
    # ``init``: what the training stage starts from besides its code — the pretrained landmark network
    # when the profile asks for one (Super-FAN's FAN), else the model's code again (DVC cannot
    # interpolate a missing key; a duplicate dependency is accepted).
    init = code["code"]
    if pretrain_settings(params, model) is not None:
        part = getattr(spec(arch).builder, "pretrain_part", None)
        if not part:
            raise ConfigError(f"models.{model}.pretrain: {arch} has no landmark network to pretrain")
        init = pretrained_file(params["profile"], model, part, dataset)
    return {"model": model, "dataset": dataset, **code, "init": init}


def runs_for(params: dict[str, Any], model: str, train_on: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """The ``runs`` entries that train ``model`` on each dataset of ``train_on`` and evaluate it on its splits."""
    from .models import spec
    from .pretrained_weights import settings as pretrain_settings, stage_key

    if model not in params["models"]:
        raise ConfigError(f"model {model!r} is not in the profile's `models`")
    arch = (params["models"][model] or {}).get("arch", model)
    trainable = getattr(spec(arch).builder, "trainable", True)
    code = _model_code_slots(arch)
    out: dict[str, dict[str, Any]] = {section: {} for section in RUN_SECTIONS}
    for dataset, splits in train_on.items():
        rid = run_id(model, dataset)
        if trainable:
            out["train"][rid] = _expected_train(params, model, dataset)
            if pretrain_settings(params, model) is not None:
                part = spec(arch).builder.pretrain_part
                out["pretrain"][stage_key(model, part, dataset)] = {"model": model, "dataset": dataset, **code}
        for split in splits:
            test_set, _, test_split = split.partition("/")
            if not test_set or not test_split:
                raise ConfigError(f"split {split!r} must be written DATASET/SPLIT (e.g. 300w/common)")
            section = "evaluate" if trainable else "evaluate_untrained"
            out[section][eval_id(rid, split)] = {"model": model, "run": rid, "test_set": test_set,
                                                 "test_split": test_split, **code}
    return out


def set_model_runs(params: dict[str, Any], model: str, train_on: dict[str, list[str]]) -> None:
    """Replace ``model``'s entries in ``params["runs"]`` by those of ``train_on`` (tests, `profile runs`)."""
    runs = params.setdefault("runs", {})
    for section in RUN_SECTIONS:
        kept = {k: v for k, v in (runs.get(section) or {}).items() if (v or {}).get("model") != model}
        runs[section] = kept
    for section, entries in runs_for(params, model, train_on).items():
        runs[section].update(entries)


def _fields(entry: Any, where: str, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(names)}, got {entry!r}")
    missing = [n for n in names if n not in entry]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(entry) - set(names))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: {', '.join(names)}")
    return entry


def _same(where: str, entry: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        if entry.get(name) != value:
            raise ConfigError(f"{where}.{name} must be {value!r}, got {entry.get(name)!r}")


def check_runs(params: dict[str, Any], where: str = PARAMS_FILE) -> None:
    """Every ``runs`` entry names a known model and dataset, and its code/init fields are the ones its
    stage runs (a wrong one is named with the value it must have)."""
    from .models import spec
    from .pretrained_weights import settings as pretrain_settings, stage_key

    runs = params.get("runs")
    if not isinstance(runs, dict):
        raise ConfigError(f"{where}: runs: expected a mapping with {', '.join(RUN_SECTIONS)}")
    for section in sorted(set(runs) - set(RUN_SECTIONS)):
        raise ConfigError(f"{where}: runs.{section}: unknown section; known: {', '.join(RUN_SECTIONS)}")
    for section in RUN_SECTIONS:
        if not isinstance(runs.get(section), dict):
            raise ConfigError(f"{where}: runs.{section}: required, a mapping (may be {{}}: dvc.yaml loops over it)")
    datasets = params["data"].get("datasets", {})

    def model_of(key: str, entry: dict[str, Any]) -> tuple[str, bool]:
        model = entry["model"]
        if model not in params["models"]:
            raise ConfigError(f"{key}.model: {model!r} is not in the profile's `models`")
        arch = (params["models"][model] or {}).get("arch", model)
        return arch, getattr(spec(arch).builder, "trainable", True)

    def dataset_known(key: str, name: str) -> None:
        if name not in datasets:
            raise ConfigError(f"{key}: dataset {name!r} not in data.datasets")

    sections = {s: runs.get(s) or {} for s in RUN_SECTIONS}
    for key, entry in sections["train"].items():
        at = f"{where}: runs.train.{key}"
        entry = _fields(entry, at, ("model", "dataset", "code", "code2", "init"))
        arch, trainable = model_of(at, entry)
        if not trainable:
            raise ConfigError(f"{at}: model {entry['model']!r} has no weights to train; "
                              "evaluate it from runs.evaluate_untrained")
        dataset_known(at, entry["dataset"])
        if key != run_id(entry["model"], entry["dataset"]):
            raise ConfigError(f"{at}: the key must be {run_id(entry['model'], entry['dataset'])!r} (MODEL-DATASET)")
        _same(at, entry, _expected_train(params, entry["model"], entry["dataset"]))
        settings = pretrain_settings(params, entry["model"])
        if settings is not None:
            wanted = stage_key(entry["model"], spec(arch).builder.pretrain_part, entry["dataset"])
            if wanted not in sections["pretrain"]:
                raise ConfigError(f"{at}: models.{entry['model']}.pretrain asks for runs.pretrain.{wanted}, absent")
    for key, entry in sections["pretrain"].items():
        at = f"{where}: runs.pretrain.{key}"
        entry = _fields(entry, at, ("model", "dataset", "code", "code2"))
        arch, _ = model_of(at, entry)
        dataset_known(at, entry["dataset"])
        part = getattr(spec(arch).builder, "pretrain_part", None)
        if pretrain_settings(params, entry["model"]) is None or not part:
            raise ConfigError(f"{at}: models.{entry['model']} has no `pretrain` entry")
        if key != stage_key(entry["model"], part, entry["dataset"]):
            raise ConfigError(f"{at}: the key must be {stage_key(entry['model'], part, entry['dataset'])!r}")
        _same(at, entry, _model_code_slots(arch))
    evaluated: dict[tuple[str, str], list[str]] = {}
    for section in ("evaluate", "evaluate_untrained"):
        for key, entry in sections[section].items():
            at = f"{where}: runs.{section}.{key}"
            entry = _fields(entry, at, ("model", "run", "test_set", "test_split", "code", "code2"))
            arch, trainable = model_of(at, entry)
            if trainable != (section == "evaluate"):
                raise ConfigError(f"{at}: model {entry['model']!r} "
                                  + ("has weights: evaluate it from runs.evaluate" if trainable
                                     else "has no weights: evaluate it from runs.evaluate_untrained"))
            prefix = f"{entry['model']}-"
            dataset = entry["run"][len(prefix):] if entry["run"].startswith(prefix) else None
            if dataset is None or dataset not in datasets:
                raise ConfigError(f"{at}.run: must be {entry['model']}-DATASET with a dataset of data.datasets, "
                                  f"got {entry['run']!r}")
            if trainable and entry["run"] not in sections["train"]:
                raise ConfigError(f"{at}.run: no runs.train.{entry['run']} trains the checkpoint it evaluates")
            dataset_known(at, entry["test_set"])
            split = f"{entry['test_set']}/{entry['test_split']}"
            if key != eval_id(entry["run"], split):
                raise ConfigError(f"{at}: the key must be {eval_id(entry['run'], split)!r} (RUN-SET_SPLIT)")
            _same(at, entry, _model_code_slots(arch))
            evaluated.setdefault((entry["model"], split), []).append(dataset)
    for (model, split), trained_on in evaluated.items():
        try:
            table_run_dataset(split, trained_on)
        except ConfigError as exc:
            raise ConfigError(f"{where}: runs: {model}: {exc}") from None


def stages(params: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every stage of the ``runs`` section with the paths ``dvc.yaml`` composes for it (the same strings)."""
    profile, prepared = params["profile"], params["data"]["prepared"]
    runs = params.get("runs") or {}
    out: dict[str, dict[str, dict[str, Any]]] = {
        "prepare": {name: {"raw": entry["raw"], "out": f"{prepared}/{name}", "skip_bad": bool(entry.get("skip_bad"))}
                    for name, entry in params["data"]["datasets"].items()}}
    for key, entry in (runs.get("pretrain") or {}).items():
        out.setdefault("pretrain", {})[key] = {
            **entry, "train_split": split_file(prepared, f"{entry['dataset']}/train"),
            "out": f"models/{profile}/pretrain/{key}", "results": f"results/{profile}/pretrain/{key}"}
    for key, entry in (runs.get("train") or {}).items():
        out.setdefault("train", {})[key] = {
            **entry, "train_split": split_file(prepared, f"{entry['dataset']}/train"),
            "out": f"models/{profile}/{key}", "results": f"results/{profile}/train/{key}"}
    for section in ("evaluate", "evaluate_untrained"):
        for key, entry in (runs.get(section) or {}).items():
            item = {**entry, "split": f"{entry['test_set']}/{entry['test_split']}",
                    "split_dir": f"{prepared}/{entry['test_set']}",
                    "out": f"results/{profile}/eval/{entry['run']}/{entry['test_set']}_{entry['test_split']}"}
            if section == "evaluate":
                item["checkpoint"] = f"models/{profile}/{entry['run']}/model.pt"
            out.setdefault(section, {})[key] = item
    for section in ("prepare", *RUN_SECTIONS):
        out.setdefault(section, {})
    return out


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared values (YAML anchors in a profile) out in full: params.yaml stays plain."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _model_code_slots(arch: str) -> dict[str, str]:
    """``code``/``code2``: the model's own file and the other model file it imports (superfan → fsrnet.py).

    DVC cannot splice a list into ``deps``, so ``dvc.yaml`` declares two slots (``code2`` repeats
    ``code`` when there is nothing else; DVC accepts the duplicate). The files every model shares
    (base.py, blocks.py, registry.py, ...) are declared in ``dvc.yaml`` directly, and
    tests/pipeline/test_dvc_deps.py fails if a model ever imports more than the slots hold.
    """
    from . import deps

    files = deps.model_specific_code(arch)
    return {"code": files[0], "code2": files[1] if len(files) > 1 else files[0]}


def _module_file(obj: Any) -> str:
    """Repository-relative path of the file defining ``obj`` (a model's DVC code dependency)."""
    import inspect

    return Path(inspect.getfile(obj)).resolve().relative_to(REPO_ROOT).as_posix()


def _render(params: dict[str, Any]) -> str:
    text = yaml.dump(params, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=None, width=100)
    return _HEADER.format(name=params["profile"]) + text


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


def write_params(params: dict[str, Any], root: str | Path | None = None) -> bool:
    """Write ``params.yaml`` if its content changes; True if written."""
    root = Path.cwd() if root is None else root
    path = Path(root) / PARAMS_FILE
    text = _render(params)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def use_profile(name: str, root: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Select profile ``name``: ``params.yaml`` ← ``pipelines/name.yaml`` (+ dotted overrides)."""
    root = Path.cwd() if root is None else root
    params = copy.deepcopy(load_profile(name, root))
    for dotted, value in (overrides or {}).items():
        set_dotted(params, dotted, value)
    validate(params, f"pipelines/{name}.yaml with overrides")
    write_params(params, root)
    return params


# DVC runs a queued (or --temp) experiment in a temporary clone, <repo>/.dvc/tmp/exps/<name>/, which holds
# what git tracks and nothing else (`dvc exp run -C PATH` copies more in, once per experiment).
TEMP_WORKSPACE = (".dvc", "tmp", "exps", "<name>")


def link_outside_data(params: dict[str, Any], root: str | Path | None = None) -> list[Path]:
    """Make raw data that a relative path outside the repository names (``../shared/datasets/300W``)
    reachable by the same path from DVC's temporary experiment workspaces; returns the links made.

    From ``<repo>/.dvc/tmp/exps/<name>/`` the path leads into ``<repo>/.dvc/tmp/...``: a symbolic link
    there points to the real folder, so the stage's dependency (path and content) is the one the main
    workspace recorded and DVC reuses its outputs. Raw data inside the repository is git-ignored: pass
    ``-C datasets/raw`` to ``dvc exp run`` (copied per experiment), or give an absolute path.
    """
    root = Path.cwd() if root is None else Path(root)
    made = []
    for name, entry in params["data"]["datasets"].items():
        raw = Path(str(entry["raw"]))
        ups = len(raw.parts) - len(Path(*[p for p in raw.parts if p != ".."]).parts) if raw.parts else 0
        if raw.is_absolute() or ups == 0 or raw.parts[:ups] != ("..",) * ups or ups >= len(TEMP_WORKSPACE):
            continue
        if len(raw.parts) == ups:
            raise ConfigError(f"data.datasets.{name}.raw: {raw} is a parent of the repository")
        first = raw.parts[ups]
        link = root.joinpath(*TEMP_WORKSPACE[: len(TEMP_WORKSPACE) - ups], first)
        target = (root.resolve().parents[ups - 1] / first)
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            raise ConfigError(f"{link} exists and is not a link to {target}: remove it, then rerun")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
        made.append(link)
    return made


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


# --- CLI: jasrbench profile ------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=".", help="repository root (default: the current directory)")
    sub = parser.add_subparsers(dest="action", required=True)
    use = sub.add_parser("use", parents=[common], help="select a profile: params.yaml ← pipelines/NAME.yaml")
    use.add_argument("name")
    use.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a dotted key (value parsed as YAML), e.g. data.datasets.300w.raw=/data/300W")
    sub.add_parser("show", parents=[common], help="print the active profile and its stages")
    sub.add_parser("link", parents=[common],
                   help="make raw data outside the repository reachable from DVC's temporary experiment workspaces")
    sub.add_parser("check", parents=[common], help="validate params.yaml (every `runs` entry against the code)")
    runs = sub.add_parser("runs", parents=[common], help="print the `runs` entries that train and evaluate a model")
    runs.add_argument("model", help="a model of the profile's `models`")
    runs.add_argument("--on", action="append", default=[], metavar="DATASET=SPLIT,SPLIT", required=True,
                      help="train on DATASET, evaluate on the SPLITs (DATASET/SPLIT); repeat for more datasets")


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if args.action == "use":
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
            overrides[key] = yaml.safe_load(value)
        params = use_profile(args.name, root, overrides)
        print(f"params.yaml now selects profile {params['profile']!r}")
        return 0
    params = load_params(root / PARAMS_FILE)
    if args.action == "link":
        for link in link_outside_data(params, root):
            print(f"linked {link} -> {os.readlink(link)}")
        print("raw data reachable from DVC's temporary experiment workspaces (dvc exp run --queue)")
        return 0
    if args.action == "check":
        print(f"params.yaml: valid ({sum(len(v) for v in stages(params).values())} stages)")
        return 0
    if args.action == "runs":
        train_on: dict[str, list[str]] = {}
        for item in args.on:
            dataset, sep, splits = item.partition("=")
            if not sep or not dataset:
                raise ConfigError(f"--on {item!r}: expected DATASET=SPLIT,SPLIT (e.g. 300w=300w/common,lfw/test)")
            train_on[dataset] = [s for s in splits.split(",") if s]
        entries = {k: v for k, v in runs_for(params, args.model, train_on).items() if v}
        print(yaml.dump({"runs": entries}, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=None, width=120),
              end="")
        return 0
    print(f"profile: {params['profile']}")
    for section, items in stages(params).items():
        print(f"{section}: {len(items)}")
        for key in items:
            print(f"  {key}")
    return 0
