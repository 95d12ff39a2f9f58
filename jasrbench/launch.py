"""``jasrbench launch``: the stages DVC says are out of date, many at once, as Dask tasks (issue 13).

DVC runs one stage at a time, and two ``dvc repro`` in one workspace fight over its lock. This
command takes the out-of-date stages and everything downstream (``Repo.status``,
``Repo.index.graph``), submits each stage's ``cmd`` as a ``dask.distributed`` task once its upstream
stages have finished (:func:`drive`: Dask's scheduler places a ready task on an idle worker), and commits each finished stage to ``dvc.lock`` (as ``dvc commit -f``,
batched: at most ``RECORD_EVERY_S`` after it finished, and at the end), so ``dvc status`` is clean
afterwards. It runs a stage as ``dvc repro`` would (shell, ``wdir``,
``DVC_ROOT``/``DVC_STAGE``, non-persistent outputs removed first; skipped when its upstream
output came out identical) but never calls ``dvc repro``, and holds DVC's lock throughout so a
concurrent ``dvc repro`` refuses to start. Workers: local CPU ones, one per GPU with task slots,
or an existing scheduler. Each task gets ``OMP_NUM_THREADS`` = cores // concurrent tasks (speed;
results too for the models whose CPU kernels follow the thread count: README, "Threads").
A failed stage stops its dependents only; the command then names it, shows its
log's tail (``.dvc/tmp/launch/<stage>.log``) and exits 1.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import JasrbenchError

TOPIC = "jasrbench-launch"
TAIL_LINES = 40
RECORD_EVERY_S = 60.0  # the longest a finished stage waits to be written to dvc.lock (batches: _Recorder)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class LaunchError(JasrbenchError):
    """The plan cannot be made or run (not a DVC repository, bad options)."""


class StageFailed(Exception):
    """A stage's command exited non-zero; carries what the report needs (picklable for Dask)."""

    def __init__(self, stage: str, returncode: int, tail: list[str], log: str):
        super().__init__(stage, returncode, tail, log)
        self.stage, self.returncode, self.tail, self.log = stage, returncode, tail, log

    def __str__(self) -> str:
        return f"stage {self.stage!r} failed (exit status {self.returncode}); log: {self.log}"


@dataclass(frozen=True)
class StageJob:
    """One DVC stage as the worker needs it (plain data: it travels to remote workers)."""

    name: str                 # DVC's addressing, e.g. ``train@edsr-300w``
    root: str                 # the repository root (absolute)
    wdir: str                 # where the command runs (absolute)
    cmds: tuple[str, ...]
    outs: tuple[str, ...]     # absolute paths of the declared outputs removed before running
    upstream: tuple[str, ...] = ()
    recheck: bool = False     # queued only because an upstream stage reruns
    env: dict = field(default_factory=dict)


# --- the plan: which stages, in which order (DVC's own status and graph) ---------------------
def _repo(root: str | Path):
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except NotDvcRepoError as exc:
        raise LaunchError(f"{root}: not a DVC repository ({exc})") from None


def plan(repo) -> list[StageJob]:
    """The out-of-date stages of ``repo`` (a ``dvc.repo.Repo``), upstream first."""
    import networkx as nx

    graph = repo.index.graph            # edges: stage → the stage that produces one of its deps
    changed = set(repo.status())        # addressing of every stage whose deps/outs/definition changed
    direct = {s for s in graph if s.addressing in changed and not s.frozen}
    todo = set(direct)
    for stage in direct:
        todo |= {s for s in nx.ancestors(graph, stage) if not s.frozen}
    runnable = {s for s in todo if s.cmd}
    for stage in sorted(todo - runnable, key=lambda s: s.addressing):
        # A data source (`dvc add`) or an import has no command to run.
        print(f"launch: {stage.addressing} has no command; `dvc commit` or `dvc update` it", file=sys.stderr)
    order = [s for s in reversed(list(nx.topological_sort(graph.subgraph(runnable))))]
    jobs = []
    for stage in order:
        cmds = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
        outs = tuple(str(out.fs_path) for out in stage.outs if not out.persist)
        upstream = tuple(sorted(u.addressing for u in graph.successors(stage) if u in runnable))
        jobs.append(StageJob(name=stage.addressing, root=str(repo.root_dir), wdir=str(stage.wdir),
                             cmds=tuple(cmds), outs=outs, upstream=upstream, recheck=stage not in direct))
    return jobs


# --- the task: one stage's command on a Dask worker -------------------------------------------
def _emit(stage: str, line: str) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(TOPIC, {"stage": stage, "line": line})
    except ValueError:  # not on a worker (called directly): print here
        print(f"[{stage}] {line}", flush=True)


def _still_changed(job: StageJob) -> bool:
    """Whether the stage is out of date now that its upstream stages have run (``dvc repro``'s check)."""
    from dvc.repo import Repo

    # Stage.changed() needs DVC's repository lock, which the launching process holds; at plan time
    # the stage's own definition and outputs were current, so its dependencies decide.
    for attempt in range(3):
        try:
            with Repo(job.root) as repo:
                stage = next(s for s in repo.index.stages if s.addressing == job.name)
                return any(dep.status() for dep in stage.deps)
        except Exception:  # noqa: BLE001 - dvc.lock caught mid-write by the launcher's commit
            if attempt == 2:
                raise
            time.sleep(1)
    return True


def _remove_outs(job: StageJob) -> None:
    import shutil

    for out in job.outs:
        path = Path(out)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def _threads() -> int:
    """Cores per concurrent task on this worker's machine (for a worker of an existing cluster)."""
    from distributed import get_worker

    worker = get_worker()
    # With GPU resources, those bound how many stages run at once, not the worker's thread count.
    slots = int(worker.state.total_resources.get("GPU", 0)) or worker.state.nthreads
    return threads_per_task(slots)


def run_stage(job: StageJob, *upstream: dict) -> dict:
    """Run one stage's command lines; raise :class:`StageFailed` when one exits non-zero.

    ``upstream``: the results of its upstream stages (plain dicts, see :func:`drive`).
    """
    # Queued only because an upstream stage was out of date: if none of them ran, or what they
    # wrote is what dvc.lock records, this stage is as up to date as `dvc status` found it.
    if job.recheck and (not any(u.get("ran") for u in upstream) or not _still_changed(job)):
        _emit(job.name, "up to date after its upstream stages: skipped")
        return {"stage": job.name, "ran": False}
    _remove_outs(job)
    env = dict(os.environ)
    env.update({"DVC_ROOT": job.root, "DVC_STAGE": job.name, "PYTHONUNBUFFERED": "1"})
    env.update(job.env)
    if "OMP_NUM_THREADS" not in job.env:
        threads = str(_threads())
        env.update(dict.fromkeys(THREAD_VARIABLES, threads))
    log_dir = Path(job.root) / ".dvc" / "tmp" / "launch"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{job.name}.log"
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    shell = os.environ.get("SHELL") or "/bin/sh"
    start = time.monotonic()
    with open(log, "w", encoding="utf-8", buffering=1) as sink:  # line-buffered: `tail -f` follows it
        for cmd in job.cmds:
            _emit(job.name, f"> {cmd}")
            sink.write(f"> {cmd}\n")
            # Universal newlines: a progress bar's carriage returns end lines too, so it streams.
            proc = subprocess.Popen([shell, "-c", cmd], cwd=job.wdir, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
            previous = None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                sink.write(line + "\n")
                tail.append(line)
                if line and line != previous:
                    _emit(job.name, line)
                previous = line
            if proc.wait() != 0:
                sink.flush()
                raise StageFailed(job.name, proc.returncode, list(tail), str(log))
    return {"stage": job.name, "ran": True, "seconds": round(time.monotonic() - start, 1)}


class _Recorder:
    """Records finished stages in ``dvc.lock`` as ``dvc commit -f --no-relink NAME`` does, in batches.

    One ``repo.commit`` per stage re-read the stage index and rewrote the whole lockfile each time: about
    10 s of the launching process's CPU per stage on 2 cores, 51 times for the smoke DAG. Here the stages
    come from one index, and the lockfile is written once per batch: when ``RECORD_EVERY_S`` has passed
    since the last write, and at the end (also after a failure or an interrupt).
    """

    def __init__(self, repo):
        self.repo, self.pending, self.last = repo, [], time.monotonic()
        self.stages = {s.addressing: s for s in repo.index.stages}

    def add(self, name: str) -> None:
        self.pending.append(name)
        if time.monotonic() - self.last >= RECORD_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        by_file: dict[str, tuple[object, list]] = {}
        for name in self.pending:
            stage = self.stages[name]
            stage.save()                    # the hashes of its deps and outs as they are now (force)
            stage.commit(relink=False)      # its outputs into the cache, as `dvc commit --no-relink`
            by_file.setdefault(stage.dvcfile.path, (stage.dvcfile, []))[1].append(stage)
        for dvcfile, stages in by_file.values():
            dvcfile.dump_stages(stages, update_pipeline=False)
        print(f"launch: recorded in dvc.lock: {', '.join(self.pending)}", flush=True)
        self.pending, self.last = [], time.monotonic()


# --- the cluster ------------------------------------------------------------------------------
def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_task(slots: int) -> int:
    """Torch/OpenMP threads each stage gets when ``slots`` stages share this machine's cores."""
    return max(1, _cores() // max(1, slots))


def _local_cluster(workers: int, gpus: list[str], per_gpu: int):
    """A local cluster: ``workers`` one-slot workers, or one worker with ``per_gpu`` slots per GPU."""
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    if not gpus:
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.CRITICAL)
    # Workers differ (each its own CUDA_VISIBLE_DEVICES): SpecCluster, LocalCluster's base, takes one spec each.
    specs = {f"gpu{g}": {"cls": Nanny, "options": {"nthreads": per_gpu, "resources": {"GPU": per_gpu},
                                                   "env": {"CUDA_VISIBLE_DEVICES": g}, "silence_logs": logging.CRITICAL}}
             for g in gpus}
    return SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                       silence_logs=logging.CRITICAL)


def _print_event(event) -> None:
    _, msg = event
    print(f"[{msg['stage']}] {msg['line']}", flush=True)


def launch(root: str | Path, *, workers: int = 2, gpus: list[str] | None = None, per_gpu: int = 1,
           scheduler: str | None = None, dry: bool = False) -> int:
    """Run the out-of-date stages of the DVC repository at ``root``; 0 when all of them finished."""
    from distributed import Client, as_completed
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import lock_repo

    gpus = list(gpus or [])
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # The in-process scheduler's and DVC's own INFO lines would drown the stages' logs.
        for name in ("distributed", "dvc"):
            logging.getLogger(name).setLevel(logging.WARNING)
    repo = _repo(root)
    try:
        with lock_repo(repo):
            try:
                jobs = plan(repo)
            except DvcException as exc:  # e.g. a malformed dvc.yaml, a stage DVC cannot resolve
                raise LaunchError(f"{root}: {exc}") from exc
            if not jobs:
                print("launch: every stage is up to date")
                return 0
            for job in jobs:
                after = f" after {', '.join(job.upstream)}" if job.upstream else ""
                print(f"launch: {job.name}{after}{' (if still out of date then)' if job.recheck else ''}")
            if dry:
                return 0
            return _run(repo, jobs, workers=workers, gpus=gpus, per_gpu=per_gpu, scheduler=scheduler,
                        Client=Client, as_completed=as_completed)
    except LockError as exc:  # taken by a `dvc repro`, `dvc commit` or another launch in this workspace
        raise LaunchError(f"{root}: {exc}") from None
    finally:
        repo.close()


@dataclass
class Outcome:
    """What a launch did: the stages that ran, those that failed, and those never started because of them."""

    ran: list[str] = field(default_factory=list)
    failed: list[StageFailed] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)


def drive(jobs: list[StageJob], submit, as_completed, on_ran=lambda name: None, slots: int | None = None) -> Outcome:
    """Submit each stage once every upstream stage has finished; stop the dependents of a failure.

    ``submit(job, upstream_results)`` returns a Dask future. A stage is handed its upstream stages'
    *results* (plain dicts), never their futures: a future argument makes Dask place the task on the
    worker that holds it, however busy, while a ready task with plain arguments goes to an idle one.
    ``slots`` bounds the stages in flight (the cluster's task slots; None: no bound): Dask assigns a
    submitted task of a new kind to a worker at once (its duration unknown, nothing to steal by), so a
    burst of ready stages was split between the workers and three trainings waited behind FSRNet on one
    worker while the other idled (the `cpu` profile's run); held here, a stage goes out when a slot frees.
    """
    by_name = {job.name: job for job in jobs}
    results: dict[str, dict] = {}
    waiting = {job.name: set(job.upstream) for job in jobs}
    outcome = Outcome()
    running: dict[str, str] = {}  # future key → stage
    pending = as_completed([])

    def submit_ready() -> None:
        for name in [n for n, ups in waiting.items() if not ups]:
            if slots is not None and len(running) >= slots:
                return
            del waiting[name]
            future = submit(by_name[name], [results[u] for u in by_name[name].upstream])
            running[future.key] = name
            pending.add(future)

    def stop_dependents(name: str) -> None:
        for other in [n for n in waiting if name in by_name[n].upstream]:
            if waiting.pop(other, None) is None:
                continue  # already stopped through another failed path (a diamond)
            outcome.stopped.append(other)
            stop_dependents(other)

    submit_ready()
    for future in pending:
        name = running.pop(future.key)
        if future.status == "finished":
            results[name] = future.result()
            if results[name]["ran"]:
                on_ran(name)
                outcome.ran.append(name)
                print(f"launch: {name} finished in {results[name]['seconds']} s", flush=True)
            for ups in waiting.values():
                ups.discard(name)
            submit_ready()
            continue
        exc = future.exception()
        if isinstance(exc, StageFailed):
            print(f"launch: {name} FAILED (exit status {exc.returncode})", flush=True)
        else:
            exc = StageFailed(name, -1, [repr(exc)], "(no log: the task itself failed)")
        outcome.failed.append(exc)
        stop_dependents(name)
    return outcome


def _run(repo, jobs: list[StageJob], *, workers, gpus, per_gpu, scheduler, Client, as_completed) -> int:
    cluster = None
    resources: dict | None = None
    env: dict[str, str] = {}
    slots: int | None = None
    if scheduler:
        client = Client(scheduler)
        slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or None
        gpu_workers = [w for w in client.scheduler_info()["workers"].values() if w.get("resources", {}).get("GPU")]
        resources = {"GPU": 1} if gpu_workers else None
        where = f"scheduler {scheduler} ({len(client.scheduler_info()['workers'])} workers)"
    else:
        cluster = _local_cluster(workers, gpus, per_gpu)
        client = Client(cluster)
        slots = len(gpus) * per_gpu if gpus else workers
        env = dict.fromkeys(THREAD_VARIABLES, str(threads_per_task(slots)))
        if gpus:
            resources = {"GPU": 1}
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""  # CPU only
        where = (f"{len(gpus)} GPU workers × {per_gpu} tasks" if gpus else f"{workers} local workers") + \
                f", {env['OMP_NUM_THREADS']} threads per task on {_cores()} cores"
    print(f"launch: {len(jobs)} stages on {where}", flush=True)
    client.subscribe_topic(TOPIC, _print_event)
    token = uuid.uuid4().hex[:8]
    recorder = None
    try:
        recorder = _Recorder(repo)
        outcome = drive(jobs, lambda job, upstream: client.submit(
            run_stage, StageJob(**{**job.__dict__, "env": env}), *upstream,
            key=f"{job.name}-{token}", pure=False, resources=resources), as_completed, on_ran=recorder.add,
            slots=slots)
        time.sleep(0.5)  # the last streamed lines arrive in batches
    finally:
        if recorder is not None:
            recorder.flush()  # also on an interrupt: what finished stays recorded
        client.close()
        if cluster is not None:
            cluster.close()
    failed, stopped, done = outcome.failed, outcome.stopped, outcome.ran
    if not failed:
        print(f"launch: {len(done)} stages ran, {len(jobs) - len(done)} were up to date; dvc.lock updated")
        return 0
    for exc in failed:
        print(f"\nlaunch: stage {exc.stage!r} failed (exit status {exc.returncode}); its log {exc.log} ends:",
              file=sys.stderr)
        for line in exc.tail:
            print(f"  [{exc.stage}] {line}", file=sys.stderr)
    if stopped:
        print(f"launch: not run because an upstream stage failed: {', '.join(sorted(stopped))}", file=sys.stderr)
    print(f"launch: failed: {', '.join(e.stage for e in failed)}", file=sys.stderr)
    return 1


# --- CLI --------------------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2,
                        help="local CPU workers, one stage each at a time (default 2; ignored with --gpus)")
    parser.add_argument("--gpus", default="", help="comma-separated GPU indices, e.g. 0,1: one worker per GPU "
                        "(default: every visible GPU)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where GPUs are visible")
    parser.add_argument("--per-gpu", type=int, default=1, help="stages sharing one GPU at a time (default 1)")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (e.g. a dask-jobqueue cluster's)")
    parser.add_argument("--root", default=".", help="the DVC repository (default: the current directory)")
    parser.add_argument("--dry", action="store_true", help="print the plan, run nothing")


def visible_gpus() -> int:
    """How many CUDA devices this process sees (the probe :func:`devices` decides from)."""
    import torch

    return torch.cuda.device_count()


def devices(requested: str, *, cpu: bool, scheduler: str | None, visible: int,
            cuda_visible: str | None) -> list[str]:
    """The GPU indices of the local workers: ``--gpus`` as given, else every visible GPU, else none (CPU).

    A GPU node must not train on its CPU without a word (issue 28): with no ``--gpus`` the visible
    GPUs are used (``CUDA_VISIBLE_DEVICES``'s entries when it is set), and ``--cpu`` asks for the CPU.
    """
    gpus = [g.strip() for g in requested.split(",") if g.strip()]
    if cpu and gpus:
        raise LaunchError("--cpu and --gpus contradict each other: give one")
    if cpu or gpus or scheduler or visible == 0:
        return gpus
    if cuda_visible:
        return [g.strip() for g in cuda_visible.split(",") if g.strip()][:visible]
    return [str(i) for i in range(visible)]


def run(args: argparse.Namespace) -> int:
    probe = 0 if (args.cpu or args.gpus or args.scheduler) else visible_gpus()
    gpus = devices(args.gpus, cpu=args.cpu, scheduler=args.scheduler, visible=probe,
                   cuda_visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    if gpus and not args.gpus:
        print(f"launch: {len(gpus)} visible GPU(s) used ({','.join(gpus)}); --cpu runs on the CPU instead", flush=True)
    if args.workers < 1 or args.per_gpu < 1:
        raise LaunchError("--workers and --per-gpu must be at least 1")
    if args.scheduler and gpus:
        raise LaunchError("--gpus configures a local cluster; an existing scheduler's workers bring their own "
                          "GPUs (start them with --resources GPU=1)")
    return launch(Path(args.root).resolve(), workers=args.workers, gpus=gpus, per_gpu=args.per_gpu,
                  scheduler=args.scheduler, dry=args.dry)
