"""``DRY_RUN=1 benchmarks/gpu_check.sh`` on this CPU (issue 28): the whole check is bounded by its deadline.

Every section's time limit derives from one global deadline, so the script ends inside it however slow
the machine: a generous deadline runs every section (toy sizes, prepared data reused), a short one cuts
or skips the late sections and still ends in time. A section may end early only at its time limit,
never by failing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import cli_env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
KILL_GRACE = 5  # timeout -k 5 in the script: at most this far past the last mark, plus the final log line


def run_check(out: Path, prepared: Path, deadline: int) -> tuple[float, str]:
    env = cli_env() | {"DRY_RUN": "1", "DEADLINE": str(deadline), "PREPARED": str(prepared),
                       "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    run = subprocess.run(["bash", str(SCRIPT), str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=deadline + 60)
    seconds = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-3000:]
    return seconds, (out / "gpu_check.log").read_text()


def interrupted(log: str, what: str) -> bool:
    """Whether the log says ``what`` was stopped at its time limit or skipped because its time was gone."""
    return bool(re.search(rf"{re.escape(what)}[^\n]*: (stopped at|skipped)", log))


def assert_no_failures(log: str) -> None:
    failed = [line for line in log.splitlines() if "FAILED" in line]
    assert not failed, "a section failed (not a time limit):\n" + "\n".join(failed)


@pytest.mark.parametrize("deadline", [240])
def test_dry_run_runs_every_section_inside_its_deadline(prepared_root, tmp_path, deadline):
    seconds, log = run_check(tmp_path / "out", prepared_root, deadline)
    assert seconds <= deadline + KILL_GRACE + 5, f"{seconds:.0f} s for a {deadline} s deadline\n{log}"
    assert re.search(rf"done in \d+ s \(deadline {deadline} s\)", log)
    assert f"reusing {prepared_root}/300w" in log  # no second prepare
    assert_no_failures(log)
    out = tmp_path / "out"
    if not interrupted(log, "environment"):
        env = json.loads((out / "environment.json").read_text())
        assert env["device"] == "cpu" and "cudnn_benchmark" in env["backends"]
    if not interrupted(log, "CUDA tests"):
        assert "skipped" in (out / "cuda_tests.txt").read_text()  # no GPU here: they skip with their reason
    rows = json.loads((out / "train_throughput.json").read_text())["rows"]  # written before the first row
    if not interrupted(log, "sweep"):
        assert {r["model"]: r.get("scale") for r in rows} == {"vdsr": 8, "jasrnet_lr64": 2}
    if not interrupted(log, "training"):
        plan = json.loads((out / "train_plan.json").read_text())
        assert plan["steps"] == plan["steps_per_epoch"] * plan["epochs"] and plan["epochs"] >= 2
        train = json.loads(next((out / "train").glob("**/train.json")).read_text())
        assert train["steps_per_epoch"] == plan["steps_per_epoch"]
    if not interrupted(log, "training") and not interrupted(log, "evaluation"):
        summary = json.loads((out / "eval" / "summary.json").read_text())
        assert summary["faces"] == 16 and "psnr" in summary["metrics"]


def test_a_short_deadline_cuts_the_late_sections_and_still_ends_in_time(prepared_root, tmp_path):
    deadline = 45
    seconds, log = run_check(tmp_path / "out", prepared_root, deadline)
    assert seconds <= deadline + KILL_GRACE + 5, f"{seconds:.0f} s for a {deadline} s deadline\n{log}"
    assert re.search(rf"done in \d+ s \(deadline {deadline} s\)", log)
    assert_no_failures(log)
    assert re.search(r": (stopped at|skipped)", log), log  # 45 s cannot hold every section on this CPU
