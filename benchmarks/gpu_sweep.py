"""Training img/s of every trainable registered model at full size, at several batch sizes (issue 12).

Run by ``benchmarks/gpu_check.sh`` on a GPU; each model goes through the
suite's default path (device batcher, ``precision auto``, fused Adam) eagerly,
and the models named by ``--compile`` also compiled (``torch.compile`` costs
about a minute per model and shape, so the sweep compiles only those). A model
that fails (e.g. out of memory) is recorded with its error and the sweep goes on.
Each model trains on batches at its own LR scale (×2 for ``jasrnet_lr64``, ×8 for the others), and
the JSON is rewritten (atomically) after every row, so a sweep stopped by a time limit keeps the rows
it measured.

    .venv/bin/python benchmarks/gpu_sweep.py --prepared DIR [--batches 8,64] [--steps 10] [--warmup 3]
        [--compile jasrnet] [--models all|a,b] [--device cuda] --json results/gpu/train_throughput.json
        [--overrides '{"vdsr": {"depth": 5}}']   # build overrides per model (dry runs; not full size then)
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from jasrbench import models, runtime, step
from jasrbench.batcher import Batcher
from jasrbench.data.augment import AugmentConfig
from jasrbench.data.split import load_split
from jasrbench.files import atomic_write_json

NOT_TRAINED = {"bicubic", "mean_shape"}  # no weights / closed form


def measure(name: str, batcher_at: Callable[[int], Batcher], data, dev: torch.device, precision: str,
            compiled: bool, steps: int, warmup: int, overrides: dict | None = None) -> dict:
    torch.manual_seed(0)
    model = models.build(name, **{"num_points": data.num_points, **(overrides or {})})
    model.set_protocol(data.protocol)
    batcher = batcher_at(model.scale)  # the model's own LR scale (jasrnet_lr64: ×2), issue 28
    model = model.to(dev).to(memory_format=torch.channels_last).train()
    optimizer = step.make_optimizer(model, 5e-5, (0.9, 0.999), 5e-4, dev)
    loss_fn = step.loss_function(model, dev, precision, compiled)

    def one(i: int) -> torch.Tensor:
        losses = loss_fn(batcher.batch(0, i))
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        return losses["total"].detach()

    t0 = time.perf_counter()
    for i in range(warmup):
        one(i)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    last = None
    for i in range(warmup, warmup + steps):
        last = one(i)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    out = {"model": name, "batch": batcher.batch_size, "scale": batcher.scale, "compile": compiled, "precision": precision,
           "params": sum(p.numel() for p in model.parameters()), "steps": steps,
           "img_per_s": steps * batcher.batch_size / seconds, "warmup_s": warm,
           "final_loss_finite": bool(torch.isfinite(last).item())}
    if dev.type == "cuda":
        out["peak_memory_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def model_names(spec: str) -> list[str]:
    """``a,b``: those, in that order; ``all`` in the list stands for every other trainable model
    (``jasrnet,all``: JASRNet first, so a sweep cut short by its time limit has measured it)."""
    given = [m for m in spec.split(",") if m]
    rest = [m for m in models.available() if m not in NOT_TRAINED and m not in given]
    return [n for m in given for n in (rest if m == "all" else [m])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True, help="folder holding 300w/train.npz")
    parser.add_argument("--batches", default="8,64")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", default="jasrnet", help="comma-separated models also measured compiled ('' = none)")
    parser.add_argument("--models", default="all", help="comma-separated; 'all' = every other trainable model")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="auto", choices=runtime.PRECISIONS)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--overrides", default="{}", help="JSON: model name → build overrides (default: full size)")
    args = parser.parse_args()
    overrides = json.loads(args.overrides)

    dev = runtime.resolve_device(args.device)
    runtime.configure_backends(dev)
    precision = runtime.resolve_precision(args.precision, dev)
    data = load_split(args.prepared / "300w" / "train.npz")
    names = model_names(args.models)
    to_compile = [m for m in args.compile.split(",") if m]
    mirror = torch.tensor(data.metadata["mirror_permutation"])
    head = runtime.describe(dev, precision, False)
    rows: list[dict] = []
    atomic_write_json(args.json, {**head, "rows": rows})
    for batch in (int(b) for b in args.batches.split(",")):
        batchers: dict[int, Batcher] = {}  # one per LR scale, built when a model first needs it

        def batcher_at(scale: int, batch: int = batch, batchers: dict = batchers) -> Batcher:
            if scale not in batchers:
                batchers[scale] = Batcher(data, torch.arange(len(data)).numpy(), AugmentConfig(), mirror, dev,
                                          seed=0, batch_size=batch, copies_per_epoch=1.0, scale=scale)
            return batchers[scale]

        for name in names:
            for compiled in ([False, True] if name in to_compile else [False]):
                try:
                    row = measure(name, batcher_at, data, dev, precision, compiled, args.steps, args.warmup,
                                  overrides.get(name))
                except Exception as exc:  # noqa: BLE001 — one model's failure (OOM, …) must not end the sweep
                    row = {"model": name, "batch": batch, "compile": compiled, "error": f"{type(exc).__name__}: {exc}"[:300]}
                rows.append(row)
                atomic_write_json(args.json, {**head, "rows": rows})  # after every row: a timeout keeps them
                print(row, flush=True)
                gc.collect()
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        del batchers, batcher_at


if __name__ == "__main__":
    main()
