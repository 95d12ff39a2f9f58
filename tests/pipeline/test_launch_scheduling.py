"""``jasrbench launch``'s scheduling on a small DVC pipeline of shell stages (seconds, not minutes).

The benchmark's DAG is a chain through one prepared dataset; this diamond (a → b, c → d) shows
what it cannot: independent stages going on past a failure (and being recorded in ``dvc.lock``),
a downstream stage skipped when its upstream rerun wrote identical output (as ``dvc repro``
does), and the GPU workers' slots and ``CUDA_VISIBLE_DEVICES`` (``--gpus`` on a CPU machine: the
variable is set, no GPU is used). The end-to-end comparison with ``dvc repro`` on the real
benchmark is ``test_launch.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DVC_YAML = """\
stages:
  a:
    cmd: python -c "open('a.txt', 'w').write(open('a.in').read())"
    deps: [a.in]
    outs: [a.txt]
  b:
    cmd: python -c "import sys; sys.exit(open('b.in').read().strip() == 'fail' and 'b told to fail')" && python -c "open('b.txt', 'w').write(open('a.txt').read() + 'b')"
    deps: [a.txt, b.in]
    outs: [b.txt]
  c:
    cmd: python -c "import os; open('c.txt', 'w').write(open('a.txt').read() + 'c'); print('c sees GPU', repr(os.environ['CUDA_VISIBLE_DEVICES']), 'threads', os.environ['OMP_NUM_THREADS'])"
    deps: [a.txt]
    outs: [c.txt]
  d:
    cmd: python -c "open('d.txt', 'w').write(open('b.txt').read() + open('c.txt').read())"
    deps: [b.txt, c.txt]
    outs: [d.txt]
"""


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _launch(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jasrbench", "launch", *args], cwd=repo, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _status(repo: Path) -> set[str]:
    done = _dvc(repo, "status", "--json")
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "a.in").write_text("a")
    (tmp_path / "b.in").write_text("ok")
    assert _dvc(tmp_path, "init", "--no-scm", "-q").returncode == 0
    return tmp_path


def test_failure_stops_dependents_while_independent_stages_finish_and_are_recorded(repo):
    (repo / "b.in").write_text("fail")
    done = _launch(repo, "--workers", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "launch: failed: b\n" in done.stderr and "[b] b told to fail" in done.stderr, done.stderr
    assert "launch: not run because an upstream stage failed: d" in done.stderr
    assert "[d]" not in done.stdout and not (repo / "d.txt").exists()
    assert "[c] c sees GPU '' threads" in done.stdout  # CPU only without --gpus
    assert _status(repo) == {"b", "d"}  # a and c finished and are in dvc.lock
    assert (repo / ".dvc" / "tmp" / "launch" / "b.log").read_text().endswith("b told to fail\n")

    (repo / "b.in").write_text("ok")
    again = _launch(repo, "--workers", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "launch: b finished" in again.stdout and "launch: d finished" in again.stdout
    assert "launch: a finished" not in again.stdout and "launch: c finished" not in again.stdout
    assert _status(repo) == set()
    assert (repo / "d.txt").read_text() == "abac"
    repro = _dvc(repo, "repro")
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout


def test_downstream_of_an_identical_rerun_is_skipped_like_dvc_repro(repo):
    assert _launch(repo).returncode == 0
    stamps = {name: (repo / f"{name}.txt").stat().st_mtime_ns for name in "bcd"}
    # a's command changes but writes the same a.txt: b, c, d are queued, checked again, skipped.
    (repo / "dvc.yaml").write_text(DVC_YAML.replace('python -c "open(', 'python -c "pass; open(', 1))
    done = _launch(repo, "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "launch: d after b, c (if still out of date then)" in done.stdout
    assert "launch: a finished" in done.stdout
    for name in "bcd":
        assert f"[{name}] up to date after its upstream stages: skipped" in done.stdout
        assert (repo / f"{name}.txt").stat().st_mtime_ns == stamps[name]
    assert _status(repo) == set()
    # a's output changes: everything downstream reruns.
    (repo / "a.in").write_text("A")
    done = _launch(repo, "--workers", "2")
    assert done.returncode == 0 and "launch: 4 stages ran" in done.stdout, done.stdout + done.stderr
    assert (repo / "d.txt").read_text() == "AbAc" and _status(repo) == set()


def test_gpu_workers_set_cuda_visible_devices_and_share_slots(repo):
    done = _launch(repo, "--gpus", "3", "--per-gpu", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 GPU workers × 2 tasks" in done.stdout
    cores = len(os.sched_getaffinity(0))
    assert f"[c] c sees GPU '3' threads {max(1, cores // 2)}" in done.stdout
    assert _status(repo) == set()


# a, then b (slow), c, d, e, each needing only a. Each stage appends its name to the shared order.txt
# (outside DVC's outputs) when it finishes, so the test reads the order in which they ended.
PLACEMENT_YAML = """\
stages:
  a:
    cmd: python -c "open('a.txt', 'w').write('a'); open('order.txt', 'a').write('a\\\\n')"
    outs: [a.txt]
""" + "".join(f"""\
  {name}:
    cmd: python -c "import time; time.sleep({delay}); open('{name}.txt', 'w').write(open('a.txt').read() + '{name}'); open('order.txt', 'a').write('{name}\\\\n')"
    deps: [a.txt]
    outs: [{name}.txt]
""" for name, delay in (("b", 12), ("c", 1), ("d", 1), ("e", 1)))


def test_ready_stages_go_to_the_idle_worker_while_a_slow_one_runs(tmp_path):
    # Before readiness scheduling, a stage submitted with its upstream future as an argument went to
    # the worker holding that future: c, d and e queued behind b on one worker while the other idled.
    (tmp_path / "dvc.yaml").write_text(PLACEMENT_YAML)
    assert _dvc(tmp_path, "init", "--no-scm", "-q").returncode == 0
    done = _launch(tmp_path, "--workers", "2", "--cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    order = (tmp_path / "order.txt").read_text().split()
    assert order[0] == "a" and order[-1] == "b", order
    assert sorted(order[1:4]) == ["c", "d", "e"], order
    assert _status(tmp_path) == set()


def test_a_failure_stops_only_its_dependents_in_the_driver():
    # The driver alone, with futures that finish at once: what is submitted, when, and what is named stopped.
    from jasrbench.launch import StageFailed, StageJob, drive

    class Done:
        def __init__(self, key, result=None, exc=None):
            self.key, self._result, self._exc = key, result, exc
            self.status = "error" if exc else "finished"

        def result(self):
            return self._result

        def exception(self):
            return self._exc

    class Queue(list):
        add = list.append

    def job(name, *upstream):
        return StageJob(name=name, root="/", wdir="/", cmds=(), outs=(), upstream=upstream)

    submitted: list[tuple[str, list]] = []

    def submit(j, upstream):
        submitted.append((j.name, upstream))
        if j.name == "b":
            return Done("b", exc=StageFailed("b", 3, ["boom"], "b.log"))
        return Done(j.name, {"stage": j.name, "ran": True, "seconds": 0.0})

    jobs = [job("a"), job("b", "a"), job("c", "a"), job("d", "b", "c"), job("e", "d")]
    outcome = drive(jobs, submit, Queue)
    assert [n for n, _ in submitted] == ["a", "b", "c"]  # d waits for b and c; b failed: d and e never start
    assert dict(submitted)["c"] == [{"stage": "a", "ran": True, "seconds": 0.0}]  # results, not futures
    assert outcome.ran == ["a", "c"] and [f.stage for f in outcome.failed] == ["b"]
    assert sorted(outcome.stopped) == ["d", "e"]


@pytest.mark.parametrize("requested, cpu, visible, cuda_visible, expected", [
    ("", False, 0, None, []),              # no GPU: the CPU
    ("", False, 2, None, ["0", "1"]),      # a GPU node: every visible GPU, not the CPU without a word
    ("", False, 2, "4,6", ["4", "6"]),     # CUDA_VISIBLE_DEVICES names which
    ("", True, 2, None, []),               # --cpu
    ("1", False, 2, None, ["1"]),          # --gpus as given
])
def test_launch_defaults_to_the_visible_gpus(requested, cpu, visible, cuda_visible, expected):
    # The probe (how many GPUs are visible) is a parameter here; the decision is the code under test.
    from jasrbench.launch import devices

    assert devices(requested, cpu=cpu, scheduler=None, visible=visible, cuda_visible=cuda_visible) == expected


def test_cpu_and_gpus_together_are_an_error():
    from jasrbench.launch import LaunchError, devices

    with pytest.raises(LaunchError, match="--cpu and --gpus"):
        devices("0", cpu=True, scheduler=None, visible=1, cuda_visible=None)


def test_a_failure_upstream_of_a_diamond_stops_each_dependent_once():
    # prepare fails; train needs prepare, evaluate needs prepare and train: both are stopped, once each
    # (the recursion through train reaches evaluate before the outer loop does).
    from jasrbench.launch import StageFailed, StageJob, drive

    class Failed:
        key, status = "prepare", "error"

        def exception(self):
            return StageFailed("prepare", 2, ["no data"], "prepare.log")

    class Queue(list):
        add = list.append

    jobs = [StageJob(name=n, root="/", wdir="/", cmds=(), outs=(), upstream=u)
            for n, u in (("prepare", ()), ("train", ("prepare",)), ("evaluate", ("prepare", "train")))]
    outcome = drive(jobs, lambda job, upstream: Failed(), Queue)
    assert [f.stage for f in outcome.failed] == ["prepare"] and sorted(outcome.stopped) == ["evaluate", "train"]


def test_no_more_stages_in_flight_than_task_slots():
    # Dask assigns a task of a new kind to a worker when it is submitted: a burst of ready stages was split
    # between the workers, and trainings queued behind a long one while the other worker idled (the `cpu`
    # profile's run). The driver holds ready stages until a slot frees.
    from jasrbench.launch import StageJob, drive

    events: list[str] = []

    class Done:
        def __init__(self, key):
            self.key, self.status = key, "finished"

        def result(self):
            events.append(f"done {self.key}")
            return {"stage": self.key, "ran": True, "seconds": 0.0}

    class Queue(list):
        add = list.append

    def submit(j, upstream):
        events.append(f"submit {j.name}")
        return Done(j.name)

    jobs = [StageJob(name=n, root="/", wdir="/", cmds=(), outs=(), upstream=()) for n in "abcd"]
    outcome = drive(jobs, submit, Queue, slots=2)
    assert events == ["submit a", "submit b", "done a", "submit c", "done b", "submit d", "done c", "done d"]
    assert outcome.ran == list("abcd")
    events.clear()
    drive(jobs, submit, Queue)  # no bound (e.g. an adaptive cluster with no worker yet): all at once
    assert events[:4] == ["submit a", "submit b", "submit c", "submit d"]
