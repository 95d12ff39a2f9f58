"""dvc.yaml declares every source file each stage runs (issue 10 item 2).

Each stage's real code is the static import closure of the module its command
runs, plus its model's module for train/evaluate stages (``jasrbench.deps``:
the same closure ``train`` fingerprints a run with). DVC itself resolves
``dvc.yaml`` against ``params.yaml`` here, so the check sees exactly the deps
``dvc repro`` compares. A file missing from a stage's deps would let a code
change leave that stage's results stale.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jasrbench import deps, profiles

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.paths import REPO_ROOT

# The module each stage's command runs (`jasrbench COMMAND` → its module, jasrbench/cli.py).
ENTRY = deps.LOOP_ENTRY


def declared_deps(root: Path) -> dict[str, list[str]]:
    """{stage address: its dependency paths} as DVC resolves ``root/dvc.yaml`` with ``root/params.yaml``."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: [d.def_path for d in s.deps] for s in repo.index.stages}


def required_code(root: Path) -> dict[str, list[str]]:
    """{stage address: every package file its command imports}, from ``root/params.yaml``'s dag."""
    params = jparams.load_params(root / "params.yaml")
    required = {"collect": deps.stage_code([ENTRY["collect"]]), "report": deps.stage_code([ENTRY["report"]])}
    for section, items in jdag.stages(params).items():
        for key, item in items.items():
            arch = jparams.model_entry(params, item["model"])["arch"] if "model" in item else None
            required[f"{section}@{key}"] = deps.stage_code([ENTRY[section]], arch)
    return required


def missing_deps(root: Path) -> list[str]:
    """One line per (undeclared file, stage loop): ``train@* (21 stages) runs X; dvc.yaml does not declare it``."""
    declared = declared_deps(root)
    problems, gaps = [], {}
    for stage, files in required_code(root).items():
        if stage not in declared:
            problems.append(f"{stage}: no such stage in dvc.yaml")
            continue
        covered = [d.rstrip("/") for d in declared[stage]]
        for f in files:
            if not any(f == d or f.startswith(d + "/") for d in covered):
                gaps.setdefault((stage.partition("@")[0], f), []).append(stage)
    for (loop, f), stages in sorted(gaps.items()):
        where = stages[0] if len(stages) == 1 else f"{loop}@* ({len(stages)} stages, e.g. {stages[0]})"
        problems.append(f"{where} runs {f}; dvc.yaml does not declare it")
    return problems


def _dvc_copy(tmp_path: Path) -> Path:
    """dvc.yaml, params.yaml and .dvc/config in a folder of their own (DVC without git)."""
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    return root


def test_closure_follows_model_imports():
    """The two imports the issue found undeclared: Super-FAN builds on FSRNet, TDAE on URDGN."""
    assert "jasrbench/models/fsrnet.py" in deps.stage_code([ENTRY["train"]], "superfan")
    assert "jasrbench/models/urdgn.py" in deps.stage_code([ENTRY["train"]], "tdae")
    # Registration imports every architecture; one model's closure must not hold another's file.
    assert "jasrbench/models/vdsr.py" not in deps.stage_code([ENTRY["train"]], "jasrnet")
    assert {"jasrbench/metrics/image_quality.py", "jasrbench/data/heatmaps.py"} <= set(
        deps.stage_code([ENTRY["evaluate"]], "jasrnet"))


def test_every_stage_declares_its_import_closure():
    problems = missing_deps(REPO_ROOT)
    assert problems == [], "dvc.yaml misses code dependencies:\n" + "\n".join(problems)


def test_a_removed_dependency_line_is_caught(tmp_path):
    root = _dvc_copy(tmp_path)
    text = (root / "dvc.yaml").read_text()
    line = "        - jasrbench/data/heatmaps.py\n"
    at = text.index(line, text.index("\n  train:\n"))  # the train loop's line
    (root / "dvc.yaml").write_text(text[:at] + text[at + len(line):])
    problems = missing_deps(root)
    assert problems and all("jasrbench/data/heatmaps.py" in p for p in problems), problems
    assert all(p.startswith("train@") for p in problems), problems


def extra_deps(root: Path) -> list[str]:
    """Declared package files that no stage of a loop runs for any built-in model (a change to one would rerun
    the loop for nothing). A loop declares one list for all its stages (DVC's foreach): ``deps.loop_code``."""
    from jasrbench.models import available

    own = {f for a in available() for f in deps.model_specific_code(a)}  # the runs entries' code/code2
    problems = set()
    for stage, paths in declared_deps(root).items():
        loop = stage.partition("@")[0]
        wanted = set(deps.loop_code(loop))
        for d in paths:
            if d.startswith("jasrbench/") and d not in own and d not in wanted and not any(f.startswith(d.rstrip("/") + "/") for f in wanted):
                problems.add(f"{loop} declares {d}, which none of its stages runs")
    return sorted(problems)


def test_no_stage_declares_code_it_does_not_run():
    # The converse of the closure check: a report label or figure setting is no dependency of training.
    problems = extra_deps(REPO_ROOT)
    assert problems == [], "\n".join(problems)
    declared = declared_deps(REPO_ROOT)
    train = next(v for k, v in declared.items() if k.startswith("train@"))
    assert not [d for d in train if d.startswith("jasrbench/report") or d in ("jasrbench/dag.py", "jasrbench/profiles.py")]
    prepare = declared["prepare@300w"]
    assert not [d for d in prepare if d.startswith(("jasrbench/models", "jasrbench/params.py", "jasrbench/recipe.py"))]


@pytest.mark.parametrize("arch, files", [("superfan", {"jasrbench/models/superfan.py", "jasrbench/models/fsrnet.py"}),
                                         ("tdae", {"jasrbench/models/tdae.py", "jasrbench/models/urdgn.py"})])
def test_every_profile_names_the_model_files_a_model_imports(arch, files, tmp_path):
    # The files are written here from the models' sources (Super-FAN builds on FSRNet, TDAE on URDGN), not
    # derived by the code under test; every profile's runs entries carry them, and a wrong one is named.
    found = 0
    for profile in ("smoke", "cpu", "paper"):
        params = jparams.load_profile(profile, REPO_ROOT)
        entries = [e for section in jdag.RUN_SECTIONS for e in params["runs"][section].values() if e["model"] == arch]
        assert all({e["code"], e["code2"]} == files for e in entries), (profile, entries)
        found += len(entries)
    assert found
    params = jparams.load_profile("smoke", REPO_ROOT)
    key, entry = next((k, e) for k, e in params["runs"]["train"].items() if e["model"] == arch)
    entry["code2"] = entry["code"]
    with pytest.raises(Exception, match=f"runs.train.{key}.code2 must be"):
        jdag.check_runs(params)


def test_skip_bad_reaches_prepare(tmp_path):
    """data.datasets.NAME.skip_bad (documented in the profiles) is passed to `jasrbench prepare`."""
    import argparse

    from dvc.repo import Repo

    from jasrbench.data import prepare

    root = _dvc_copy(tmp_path)
    params = jparams.load_params(root / "params.yaml")
    params["data"]["datasets"]["300w"]["skip_bad"] = True
    profiles.write_params(params, root)
    with Repo(str(root)) as repo:
        cmds = {s.name: s.cmd for s in repo.index.stages if s.name.startswith("prepare@")}
    assert "--skip-bad true" in cmds["prepare@300w"] and "--skip-bad false" in cmds["prepare@lfw"]
    parser = argparse.ArgumentParser()
    prepare.configure_parser(parser)
    for flag, value in ((["--skip-bad", "true"], True), (["--skip-bad", "false"], False), (["--skip-bad"], True), ([], False)):
        args = parser.parse_args(["300w", "--raw", "r", "--out", "o", *flag])
        assert args.skip_bad is value, flag
