"""``jasrbench profile``: select a profile (``params.yaml`` ← ``pipelines/NAME.yaml``), show or check it,
print a model's ``runs`` entries, and link raw data for DVC's temporary experiment workspaces."""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from .dag import check, load_checked, runs_for, set_model_runs, stages
from .errors import ConfigError
from .files import atomic_write_text
from .params import PARAMS_FILE, load_profile, set_dotted

_HEADER = (
    "# The parameters DVC reads. Selected profile: {name} (from pipelines/{name}.yaml).\n"
    "# Switch profiles with `jasrbench profile use NAME` (or `make reproduce PROFILE=NAME`).\n"
    "# `runs` is the DAG (one entry per stage; `jasrbench profile runs` prints new entries).\n"
)


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared values (YAML anchors in a profile) out in full: params.yaml stays plain."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _render(params: dict[str, Any]) -> str:
    text = yaml.dump(params, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=None, width=100)
    return _HEADER.format(name=params["profile"]) + text


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
    check(params, f"pipelines/{name}.yaml with overrides")
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
    runs.add_argument("--add", action="store_true",
                      help="write the entries into params.yaml (replacing the model's), instead of printing them")


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
    params = load_checked(root / PARAMS_FILE)
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
        if args.add:  # e.g. a plugin model just added to `models:` (issue 27)
            set_model_runs(params, args.model, train_on)
            write_params(params, root)
            print(f"params.yaml: the runs entries of {args.model} written ({sum(len(v) for v in stages(params).values())} stages)")
            return 0
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
