"""Profiles and ``params.yaml``: every knob the DAG reads, in one place (DESIGN §6).

A *profile* (``pipelines/<name>.yaml``) is a complete parameter set: ``paper``
(the paper's settings, GPU), ``cpu`` (full-width models in hours on a laptop
CPU), ``smoke`` (the whole DAG in minutes, for CI). Profiles change numbers,
never code paths.

All paths are relative to the repository root, which is the current directory
(DVC runs every stage there). ``params.yaml`` is what DVC reads: the selected profile's content plus a
``dag`` section derived from it (which prepare/train/evaluate stages exist and
their paths), so ``dvc.yaml`` is a fixed set of ``foreach`` loops over it.

- ``jasrbench profile use NAME`` copies ``pipelines/NAME.yaml`` into
  ``params.yaml`` and derives ``dag``;
- ``jasrbench profile sync`` re-derives ``dag`` after you edit ``params.yaml``
  by hand (``make reproduce`` runs it first; it writes only on change);
- ``jasrbench profile show`` prints the active profile and its stages.

Profile schema (see ``pipelines/paper.yaml`` for the documented full example)::

    profile: NAME
    seed: 0
    data:      {prepared: DIR, protocol: paper|clean, datasets: {NAME: {raw: DIR, stand_in: TEXT?, skip_bad: BOOL?}}}
    train:     {...}   # optimizer, schedule, batch, augmentation, slice sizes
    evaluate:  {...}   # batch size, slice sizes, recognizer, bootstrap
    models:    {REGISTRY_NAME: {tables: [..], overrides: {..}, train_on: {DATASET: [SPLIT, ..]}}}

``train_on`` maps a training dataset to the test splits (``DATASET/SPLIT``) the
model trained on it is evaluated on. Models without weights (bicubic) are
evaluated without a training stage.
"""

from __future__ import annotations

import argparse
import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .io import atomic_write_text
from .paths import PACKAGE_DIR, REPO_ROOT

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "pipelines"
_HEADER = (
    "# The parameters DVC reads. Selected profile: {name} (from pipelines/{name}.yaml).\n"
    "# Switch profiles with `jasrbench profile use NAME` (or `make reproduce PROFILE=NAME`).\n"
    "# After editing by hand, `jasrbench profile sync` re-derives the `dag` section\n"
    "# (`make reproduce` does it for you). `dag` is derived: do not edit it.\n"
)
REQUIRED_SECTIONS = ("profile", "seed", "data", "train", "evaluate", "models")


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
        for dataset, splits in ((entry or {}).get("train_on") or {}).items():
            if dataset not in datasets:
                raise ConfigError(f"{where}: models.{model}.train_on: dataset {dataset!r} not in data.datasets")
            for split in splits:
                split_dataset = split.partition("/")[0]
                if split_dataset not in datasets:
                    raise ConfigError(f"{where}: models.{model}: split {split!r} names a dataset not in data.datasets")
        evaluated: dict[str, list[str]] = {}
        for dataset, splits in ((entry or {}).get("train_on") or {}).items():
            for split in splits:
                evaluated.setdefault(split, []).append(dataset)
        for split, trained_on in evaluated.items():
            try:
                table_run_dataset(split, trained_on)
            except ConfigError as exc:
                raise ConfigError(f"{where}: models.{model}.train_on: {exc}") from None


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
    the source keeps the accepted keys those of ``train.TrainConfig`` / ``data.augment.AugmentConfig``.
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
    known = _dataclass_keys("train", "TrainConfig")
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


def derive_dag(params: dict[str, Any]) -> dict[str, Any]:
    """The stage lists of ``dvc.yaml`` derived from a profile."""
    from .models import spec

    profile = params["profile"]
    prepared = params["data"]["prepared"]
    from .pretrained import pretrained_file, settings as pretrain_settings, stage_key

    dag: dict[str, Any] = {"prepare": {}, "pretrain": {}, "train": {}, "evaluate": {}, "evaluate_untrained": {}}
    for dataset, entry in params["data"]["datasets"].items():
        dag["prepare"][dataset] = {"raw": entry["raw"], "out": f"{prepared}/{dataset}",
                                   "skip_bad": bool(entry.get("skip_bad", False))}
    for model, entry in params["models"].items():
        entry = entry or {}
        arch = entry.get("arch", model)
        trainable = getattr(spec(arch).builder, "trainable", True)
        code = _model_code_slots(arch)
        for dataset, splits in (entry.get("train_on") or {}).items():
            rid = run_id(model, dataset)
            # ``init``: what the training stage starts from besides its code — the pretrained
            # landmark network when the profile asks for one (Super-FAN's FAN), else the model's code
            # again (DVC cannot interpolate a missing key; a duplicate dependency is accepted).
            init = code["code"]
            part = getattr(spec(arch).builder, "pretrain_part", None)
            if trainable and pretrain_settings(params, model) is not None:
                if not part:
                    raise ConfigError(f"models.{model}.pretrain: {arch} has no landmark network to pretrain")
                init = pretrained_file(profile, model, part, dataset)
                dag["pretrain"][stage_key(model, part, dataset)] = {
                    "model": model, "dataset": dataset, **code,
                    "train_split": split_file(prepared, f"{dataset}/train"),
                    "out": str(Path(init).parent), "results": f"results/{profile}/pretrain/{stage_key(model, part, dataset)}",
                }
            if trainable:
                dag["train"][rid] = {
                    "model": model,
                    "dataset": dataset,
                    **code,
                    "init": init,
                    "train_split": split_file(prepared, f"{dataset}/train"),
                    "out": f"models/{profile}/{rid}",
                    "results": f"results/{profile}/train/{rid}",
                }
            for split in splits:
                eid = eval_id(rid, split)
                item = {
                    "model": model,
                    "run": rid,
                    **code,
                    "split": split,
                    "split_dir": f"{prepared}/{split.partition('/')[0]}",
                    "out": f"results/{profile}/eval/{rid}/{split.replace('/', '_')}",
                }
                if trainable:
                    item["checkpoint"] = f"models/{profile}/{rid}/model.pt"
                    dag["evaluate"][eid] = item
                else:
                    dag["evaluate_untrained"][eid] = item
    return dag


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
    body = {k: v for k, v in params.items() if k != "dag"}
    body["dag"] = derive_dag(params)
    text = yaml.dump(body, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=None, width=100)
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
    """Write ``params.yaml`` (with the derived ``dag``) if its content changes; True if written."""
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
            "tables": list(entry.get("tables") or []), "train_on": dict(entry.get("train_on") or {})}


# --- CLI: jasrbench profile ------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=".", help="repository root (default: the current directory)")
    sub = parser.add_subparsers(dest="action", required=True)
    use = sub.add_parser("use", parents=[common], help="select a profile: params.yaml ← pipelines/NAME.yaml")
    use.add_argument("name")
    use.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a dotted key (value parsed as YAML), e.g. data.datasets.300w.raw=/data/300W")
    sub.add_parser("sync", parents=[common], help="re-derive params.yaml's `dag` section after hand edits")
    sub.add_parser("show", parents=[common], help="print the active profile and its stages")
    sub.add_parser("check", parents=[common], help="fail if params.yaml's `dag` is out of date")


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
    if args.action == "sync":
        written = write_params(params, root)
        print("params.yaml: dag re-derived" if written else "params.yaml: up to date")
        return 0
    if args.action == "check":
        current = (root / PARAMS_FILE).read_text(encoding="utf-8")
        expected = _render(params)
        if current != expected:
            diff = "".join(difflib.unified_diff(current.splitlines(True), expected.splitlines(True), "params.yaml", "expected"))
            raise ConfigError(f"params.yaml is out of date; run `jasrbench profile sync`:\n{diff}")
        print("params.yaml: up to date")
        return 0
    dag = derive_dag(params)
    print(f"profile: {params['profile']}")
    for section, stages in dag.items():
        print(f"{section}: {len(stages)}")
        for key in stages:
            print(f"  {key}")
    return 0
