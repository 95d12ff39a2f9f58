"""The ``runs`` section of params: the DAG's stages, one entry per pretrain/train/evaluate stage.

Written out in the profile, never derived at run time, so ``dvc.yaml``'s ``foreach`` loops read it
directly and ``dvc exp run -S`` edits it like any param. Each entry names its model, data and the
model-specific code files (and pretrained weights) the stage depends on; :func:`check_runs` checks
them against the code and names the value a wrong field must have, so an edit cannot leave stale
dependencies. :func:`runs_for` writes a model's entries; :func:`stages` gives every stage with the
paths ``dvc.yaml`` composes. No stage module imports this one: the stages read only their own entry.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError
from .params import PARAMS_FILE, load_params, validate

RUN_SECTIONS = ("pretrain", "train", "evaluate", "evaluate_untrained", "robustness", "robustness_untrained")
# The robustness track (issue 26): every evaluation of a split the profile's ``robustness.splits`` lists is
# repeated under each of its ``robustness.degradations`` (camera degradations of the test LR, no retraining).
ROBUSTNESS_SECTIONS = {"evaluate": "robustness", "evaluate_untrained": "robustness_untrained"}


def robustness_id(run: str, split: str, degradation: str) -> str:
    """Name of one robustness evaluation (a DVC stage key): ``<run>-<set_split>-<degradation>``."""
    return f"{eval_id(run, split)}-{degradation}"


def robustness_plan(params: dict[str, Any]) -> tuple[list[str], set[str], set[str]]:
    """(degradations, splits, models) of the profile's optional ``robustness`` section (none without it)."""
    section = params.get("robustness") or {}
    unknown = sorted(set(section) - {"degradations", "splits", "models"})
    if unknown:
        raise ConfigError(f"robustness.{unknown[0]}: unknown key; known: degradations, splits, models")
    models = set(section.get("models") or [])
    for name in sorted(models - set(params["models"])):
        raise ConfigError(f"robustness.models: {name!r} is not in the profile's `models`")
    degradations = list(section.get("degradations") or [])
    from .data.protocols import PROTOCOLS

    for name in degradations:
        if name not in PROTOCOLS or not PROTOCOLS[name].per_face:
            known = sorted(n for n, p in PROTOCOLS.items() if p.per_face)
            raise ConfigError(f"robustness.degradations: unknown camera degradation {name!r}; choose from {', '.join(known)}")
    return degradations, set(section.get("splits") or []), models


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
            entry = {"model": model, "run": rid, "test_set": test_set, "test_split": test_split, **code}
            out[section][eval_id(rid, split)] = entry
            degradations, robust_splits, robust_models = robustness_plan(params)
            if split in robust_splits and model in robust_models:
                for name in degradations:
                    out[ROBUSTNESS_SECTIONS[section]][robustness_id(rid, split, name)] = {
                        "model": model, "run": rid, "test_set": test_set, "test_split": test_split,
                        "degradation": name, **code}
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
    degradations, _, _ = robustness_plan(params)
    for section in ("evaluate", "evaluate_untrained", "robustness", "robustness_untrained"):
        robust = section.startswith("robustness")
        trained_section = "robustness" if robust else "evaluate"
        for key, entry in sections[section].items():
            at = f"{where}: runs.{section}.{key}"
            entry = _fields(entry, at, ("model", "run", "test_set", "test_split", *(("degradation",) if robust else ()),
                                        "code", "code2"))
            arch, trainable = model_of(at, entry)
            if trainable != (section == trained_section):
                raise ConfigError(f"{at}: model {entry['model']!r} "
                                  + (f"has weights: evaluate it from runs.{trained_section}" if trainable
                                     else f"has no weights: evaluate it from runs.{trained_section}_untrained"))
            if robust and entry["degradation"] not in degradations:
                raise ConfigError(f"{at}.degradation: {entry['degradation']!r} is not in the profile's "
                                  f"robustness.degradations ({', '.join(degradations) or 'none'})")
            prefix = f"{entry['model']}-"
            dataset = entry["run"][len(prefix):] if entry["run"].startswith(prefix) else None
            if dataset is None or dataset not in datasets:
                raise ConfigError(f"{at}.run: must be {entry['model']}-DATASET with a dataset of data.datasets, "
                                  f"got {entry['run']!r}")
            if trainable and entry["run"] not in sections["train"]:
                raise ConfigError(f"{at}.run: no runs.train.{entry['run']} trains the checkpoint it evaluates")
            dataset_known(at, entry["test_set"])
            split = f"{entry['test_set']}/{entry['test_split']}"
            wanted = robustness_id(entry["run"], split, entry["degradation"]) if robust else eval_id(entry["run"], split)
            if key != wanted:
                raise ConfigError(f"{at}: the key must be {wanted!r} (RUN-SET_SPLIT{'-DEGRADATION' if robust else ''})")
            _same(at, entry, _model_code_slots(arch))
            if not robust:
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
    for section in ("robustness", "robustness_untrained"):
        for key, entry in (runs.get(section) or {}).items():
            item = {**entry, "split": f"{entry['test_set']}/{entry['test_split']}",
                    "split_dir": f"{prepared}/{entry['test_set']}",
                    "out": f"results/{profile}/eval/{entry['run']}/robustness/{entry['degradation']}/"
                           f"{entry['test_set']}_{entry['test_split']}"}
            if section == "robustness":
                item["checkpoint"] = f"models/{profile}/{entry['run']}/model.pt"
            out.setdefault(section, {})[key] = item
    for section in ("prepare", *RUN_SECTIONS):
        out.setdefault(section, {})
    return out


def _model_code_slots(arch: str) -> dict[str, str]:
    """``code``/``code2``: the model's own file and the other model file it imports (superfan → fsrnet.py).

    DVC cannot splice a list into ``deps``, so ``dvc.yaml`` declares two slots (``code2`` repeats
    ``code`` when there is nothing else; DVC accepts the duplicate). The files every model shares
    (base.py, blocks.py, registry.py, ...) are declared in ``dvc.yaml`` directly, and
    tests/pipeline/test_dvc_deps.py fails if a model ever imports more than the slots hold.

    A plugin model (issue 27) names its own files: absolute paths when installed (site-packages), relative
    to the repository for a folder inside it. A plugin package of more than two files is declared by its
    folder in ``code2`` (DVC hashes the folder), its model's file in ``code``.
    """
    from . import deps

    files = deps.model_specific_code(arch)
    if len(files) > 2:
        folder = deps.plugin_folder(arch)
        if folder is not None and all(f == folder or f.startswith(folder.rstrip("/") + "/") for f in files):
            return {"code": files[0], "code2": folder}
        raise ConfigError(f"model {arch!r}: its own code spans {len(files)} files ({', '.join(files)}) but dvc.yaml "
                          "declares two slots (code, code2)")
    return {"code": files[0], "code2": files[1] if len(files) > 1 else files[0]}




def check(params: dict[str, Any], where: str = PARAMS_FILE) -> None:
    """The whole check: the structure (:func:`jasrbench.params.validate`) and every ``runs`` entry."""
    validate(params, where)
    check_runs(params, where)


def load_checked(path=None) -> dict[str, Any]:
    """The active parameters, ``runs`` included, checked (the report side and the ``profile`` command)."""
    params = load_params(path)
    check_runs(params, str(path or PARAMS_FILE))
    return params
