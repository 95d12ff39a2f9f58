"""The smoke DAG end to end on a fresh copy of the repository (issue 5 item 6, issue 6's gate, issue 13).

The copy holds exactly what a clone holds (tracked and untracked-not-ignored
files), with ``../shared/datasets`` beside it pointing at the real test data,
and runs this checkout's code (``PYTHONPATH``). The whole DAG runs under
``jasrbench launch --workers 2`` (two stages at a time on Dask; the committed
``results/smoke`` were made by a sequential ``dvc repro``, and the regression
gate compares the two within the smoke tolerances). Launch must finish; every
declared output must exist; every metric must be finite and in range; the
paper's tables must hold every row and compile; ``dvc status`` must then be
clean and ``dvc repro`` must do nothing; a forced ``dvc repro`` (JASRNet
retrained, Bicubic re-evaluated, at launch's thread count) must give an
identical ``metrics.json``; changing one model's params must retrain only that
model. The sequential ``dvc repro`` of a DAG from scratch is exercised by
``test_launch.py`` (a reduced DAG, both ways).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from latex_checks import compile_problems, pdflatex_available, structure_problems
from pipeline_helpers import copy_clone

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.launch import threads_per_task
from jasrbench.paths import REPO_ROOT
from jasrbench.report import paper

pytestmark = pytest.mark.slow

RANGES = {  # metric prefix → (low, high) plausible for any model, trained or not
    "psnr": (3.0, 60.0), "ssim": (-0.2, 1.0), "nme": (0.0, 1000.0), "auc": (0.0, 1.0),
    "failure_rate": (0.0, 1.0), "acc": (0.0, 100.0), "roc_auc": (0.0, 1.0),
}


def _run(cmd: list[str], env: dict, cwd: Path, timeout: int = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, data_root):
    base = tmp_path_factory.mktemp("smoke")
    repo = base / "repo"
    repo.mkdir()
    (base / "shared").mkdir()
    (base / "shared" / "datasets").symlink_to(data_root, target_is_directory=True)
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": str(repo), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "JASRBENCH_TEST_DATA": str(data_root), "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@localhost",
        "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@localhost",
    })
    env.pop("MLFLOW_TRACKING_URI", None)  # the copy's own mlflow.db
    env.pop("JASRBENCH_MLFLOW", None)
    copy_clone(repo, env)
    use = _run([sys.executable, "-m", "jasrbench.cli", "profile", "use", "smoke"], env, repo)
    assert use.returncode == 0, use.stderr
    start = time.monotonic()
    launch = _run([sys.executable, "-m", "jasrbench", "launch", "--workers", "2"], env, repo)
    seconds = time.monotonic() - start
    assert launch.returncode == 0, (launch.stdout[-4000:], launch.stderr[-4000:])
    print(f"\nsmoke DAG under launch --workers 2: {seconds:.0f} s")
    # What launch gave each stage (two task slots): a rerun compared bit for bit uses it too.
    threads = str(threads_per_task(2))
    return SimpleNamespace(repo=repo, env=env, log=launch.stdout + launch.stderr, seconds=seconds,
                           params=jparams.load_params(repo / "params.yaml"), threads=threads)


def _metrics(repo: Path) -> dict:
    return json.loads((repo / "results" / "smoke" / "metrics.json").read_text())


def test_every_declared_output_exists(smoke):
    dag = jdag.stages(smoke.params)
    for item in dag["train"].values():
        assert (smoke.repo / item["out"] / "model.pt").is_file(), item["out"]
        # A finished run leaves no resume state (nothing a later rerun could resume), no temp files.
        assert [p.name for p in (smoke.repo / item["out"]).iterdir()] == ["model.pt"], item["out"]
        for name in ("history.csv", "train.json", "samples.png"):
            assert (smoke.repo / item["results"] / name).is_file(), (item["results"], name)
    for item in [*dag["evaluate"].values(), *dag["evaluate_untrained"].values()]:
        for name in ("summary.json", "per_image.csv", "ced.csv"):
            assert (smoke.repo / item["out"] / name).is_file(), (item["out"], name)
    for dataset in dag["prepare"]:
        assert (smoke.repo / "datasets" / "prepared" / dataset / "summary.json").is_file()
    assert (smoke.repo / "mlflow.db").is_file()


def test_metrics_are_complete_finite_and_in_range(smoke):
    merged = _metrics(smoke.repo)
    models = merged["models"]
    from jasrbench.models import build

    assert set(models) == set(smoke.params["models"])
    for name, splits in models.items():
        arch = jparams.model_entry(smoke.params, name)["arch"]
        model = build(arch, **jparams.model_entry(smoke.params, name)["overrides"])
        common = splits["300w/common"]
        assert common["available"], name
        if model.predicts_sr:
            assert {"psnr", "ssim"} <= set(common), name
        if model.predicts_landmarks:
            assert {"nme", "auc_0.08", "failure_rate_0.08"} <= set(common), name
        for split, entry in splits.items():
            for metric, value in entry.items():
                if not isinstance(value, dict):
                    continue
                low, high = next(r for p, r in sorted(RANGES.items(), key=lambda kv: -len(kv[0])) if metric.startswith(p))
                assert math.isfinite(value["mean"]) and low <= value["mean"] <= high, (name, split, metric, value)
    assert models["bicubic"]["300w/challenge"]["available"] is False
    assert "ibug" in models["bicubic"]["300w/challenge"]["reason"]
    lfw = models["bicubic"]["lfw/test"]
    assert len(lfw["acc"]["folds"]) == 10 and "acc_hr" in lfw
    assert "not LFW" in merged["stand_in"]["lfw"]


def test_report_tables_and_figures(smoke, tmp_path):
    """The paper's tables hold every model row and compile (pdflatex where installed, structure always)."""
    out = smoke.repo / "results" / "smoke"
    for spec in paper.TABLES:
        for suffix in ("tex", "csv", "md"):
            assert (out / "tables" / f"{spec.name}.{suffix}").is_file(), (spec.name, suffix)
        tex = (out / "tables" / f"{spec.name}.tex").read_text()
        assert structure_problems(tex, spec) == [], spec.name
        if pdflatex_available():
            assert compile_problems(out / "tables" / f"{spec.name}.tex", tmp_path) is None
    figures = {p.name for p in (out / "figures").iterdir()}
    assert any(n.endswith(".png") for n in figures) and any(n.endswith(".pdf") for n in figures)
    readme = (out / "README.md").read_text()
    assert "smoke" in readme and "not LFW" in readme
    # DIC (not in the paper) in Tables 1-3, its note giving its own protocol (issue 25).
    for name in ("table1", "table2", "table3"):
        md = (out / "tables" / f"{name}.md").read_text()
        assert "| DIC" in md and "not in the paper: DIC (Ma et al., CVPR 2020)" in md, name


def test_robustness_track_end_to_end(smoke):
    """Every robustness stage ran: metrics.json's robustness section, the report's tables and curves (issue 26)."""
    metrics = _metrics(smoke.repo)
    degradations = {"blur2", "noise5", "jpeg50", "mixed"}
    for run in ("bicubic-300w", "mean_shape-300w", "edsr-300w", "edsr_mixed-300w", "jasrnet-300w"):
        entry = metrics["robustness"][run]
        assert set(entry["degradations"]) == degradations, run
        for values in entry["degradations"].values():
            assert values["300w/common"]["available"], run
    assert metrics["robustness"]["edsr_mixed-300w"]["degradations"]["mixed"]["300w/common"][
        "trained_degradation"] == "mixed"
    out = smoke.repo / "results" / "smoke"
    md = (out / "tables" / "robustness.md").read_text()
    assert "EDSR (trained on mixed)" in md and "Bicubic" in md and "clean" in md.splitlines()[4]
    frame = pd.read_csv(out / "tables" / "robustness.csv")
    assert set(frame["degradation"]) == degradations and frame["mean"].notna().all()
    assert (out / "figures" / "robustness.png").is_file()
    assert "## Robustness" in (out / "README.md").read_text()
    drops = pd.read_csv(out / "tables" / "robustness_drops.csv")  # EDSR-mixed says what it recovers of EDSR's drops
    assert set(drops.loc[drops["scope"] == "trained twin", "twin"]) == {"EDSR (trained on mixed)"}


def test_regression_gate_passes_against_the_committed_expectations(smoke):
    expected = REPO_ROOT / "results" / "smoke" / "expected.json"
    gate = _run([sys.executable, "-m", "jasrbench.cli", "check", "--expected", str(expected),
                 "--actual", str(smoke.repo / "results" / "smoke" / "metrics.json")], smoke.env, smoke.repo)
    assert gate.returncode == 0, gate.stdout + gate.stderr


def test_regression_gate_fails_when_a_model_gets_worse(smoke, tmp_path):
    """Make JASRNet worse on purpose (its expected PSNR raised by 1 dB): the gate fails and names it."""
    expected = _metrics(smoke.repo)
    expected["models"]["jasrnet"]["300w/common"]["psnr"]["mean"] += 1.0
    path = tmp_path / "expected.json"
    path.write_text(json.dumps(expected))
    gate = _run([sys.executable, "-m", "jasrbench.cli", "check", "--expected", str(path),
                 "--actual", str(smoke.repo / "results" / "smoke" / "metrics.json")], smoke.env, smoke.repo)
    assert gate.returncode == 1
    assert "REGRESSION jasrnet / 300w/common / psnr" in gate.stdout


def test_dvc_metrics_and_plots(smoke):
    shown = _run(["dvc", "metrics", "show", "--json"], smoke.env, smoke.repo)
    assert shown.returncode == 0, shown.stderr
    assert "results/smoke/metrics.json" in shown.stdout
    plots = _run(["dvc", "plots", "show", "--json"], smoke.env, smoke.repo)
    assert plots.returncode == 0, plots.stderr
    assert "history.csv" in plots.stdout and "ced.csv" in plots.stdout


def test_second_repro_does_nothing(smoke):
    status = _run(["dvc", "status"], smoke.env, smoke.repo)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    again = _run(["dvc", "repro"], smoke.env, smoke.repo)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout[-3000:]


def test_changing_one_models_params_retrains_only_that_model(smoke):
    params_file = smoke.repo / "params.yaml"
    original = params_file.read_text()
    try:
        params = yaml.safe_load(original)
        params["models"]["vdsr"]["overrides"]["depth"] += 1
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        status = _run(["dvc", "status", "--json"], smoke.env, smoke.repo)
        assert status.returncode == 0, status.stderr
        changed = set(json.loads(status.stdout))
        assert "train@vdsr-300w" in changed
        assert {s for s in changed if s.startswith("train@")} == {"train@vdsr-300w"}
        assert not {s for s in changed if s.startswith("evaluate") and "vdsr" not in s}
    finally:
        params_file.write_text(original)


def _train_code_digest(smoke, arch: str) -> dict[str, str]:
    """The code part of ``arch``'s train fingerprint, over the smoke tree's files."""
    from jasrbench import deps
    from jasrbench.fingerprint import TRAIN_ENTRY

    return deps.code_digest(deps.stage_code(TRAIN_ENTRY, arch), root=smoke.repo)


def _stale_after(smoke, edits: dict[str, tuple[str, str]], during=lambda: None):
    """(the stages ``dvc status`` lists, ``during()``) with text replaced in files of the smoke tree (restored)."""
    originals = {name: (smoke.repo / name).read_text() for name in edits}
    try:
        for name, (old, new) in edits.items():
            assert old in originals[name], (name, old)
            (smoke.repo / name).write_text(originals[name].replace(old, new, 1))
        status = _run(["dvc", "status", "--json"], smoke.env, smoke.repo)
        assert status.returncode == 0, status.stderr
        return set(json.loads(status.stdout)), during()
    finally:
        for name, text in originals.items():
            (smoke.repo / name).write_text(text)


def test_a_paper_label_or_figure_setting_retrains_nothing(smoke):
    # A caption edit under the paper profile once made every train stage stale (29 models, ~10 GPU-hours).
    before = {arch: _train_code_digest(smoke, arch) for arch in ("edsr", "jasrnet", "superfan")}
    stale, during = _stale_after(smoke, {"jasrbench/report/paper.py": ('Row("Bicubic"', 'Row("Bicubic (edited)"'),
                                         "jasrbench/report/figures.py": ("FIG_WIDTH = 7.0", "FIG_WIDTH = 7.5")},
                                 lambda: {arch: _train_code_digest(smoke, arch) for arch in before})
    assert stale == {"collect", "report"}, stale
    assert during == before  # each train stage's fingerprint is unchanged: nothing would be retrained


def test_editing_one_model_file_reruns_exactly_its_stages(smoke):
    before = _train_code_digest(smoke, "edsr")
    stale, during = _stale_after(smoke, {"jasrbench/models/edsr.py": ('"""', '"""An edited docstring. ')},
                                 lambda: _train_code_digest(smoke, "edsr"))
    assert during != before  # the run's fingerprint follows its model's file
    # EDSR and EDSR trained on `mixed` (the same architecture), and nothing else.
    trains = {"train@edsr-300w", "train@edsr_mixed-300w"}
    assert {s for s in stale if s.startswith(("train@", "pretrain@"))} == trains, stale
    evaluations = {s for s in stale if s.startswith(("evaluate", "robustness"))}
    assert evaluations and all(s.split("@")[1].startswith(("edsr-", "edsr_mixed-")) for s in evaluations), stale
    # dvc status lists the stages whose own deps changed: collect and report rerun downstream of them.
    assert stale - evaluations - trains == set(), stale


# Forced again: JASRNet's training (it retrains from scratch: a finished run is never resumed) and
# everything downstream of it (its evaluations, collect, report), and the untrained Bicubic rows. The
# other models run the same code; tests/metrics/test_batch_independence.py and the thread-count tests
# cover what could make one number move. Rerunning every model would double this module's time.
FORCED = ["train@jasrnet-300w", "evaluate_untrained@bicubic-300w-300w_common",
          "evaluate_untrained@bicubic-300w-lfw_test"]


def test_a_second_run_with_the_same_seed_gives_identical_metrics(smoke):
    """Runs last: a forced rerun must reproduce metrics.json byte for byte (CPU), having really retrained."""
    first = (smoke.repo / "results" / "smoke" / "metrics.json").read_bytes()
    weights = (smoke.repo / "models" / "smoke" / "jasrnet-300w" / "model.pt").stat().st_mtime_ns
    env = {**smoke.env, "OMP_NUM_THREADS": smoke.threads, "MKL_NUM_THREADS": smoke.threads}
    rerun = _run(["dvc", "repro", "--force", "--downstream", *FORCED], env, smoke.repo)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr
    assert all(f"Running stage '{stage}'" in log for stage in [*FORCED, "collect"]), log[-3000:]
    assert "resuming" not in log, "a finished run was resumed instead of retrained"
    assert (smoke.repo / "models" / "smoke" / "jasrnet-300w" / "model.pt").stat().st_mtime_ns != weights
    assert (smoke.repo / "results" / "smoke" / "metrics.json").read_bytes() == first
