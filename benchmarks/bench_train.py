"""Training throughput (img/s) of the suite's default path, optionally against a reference path (issue 12).

The suite's path is what ``jasrbench train`` runs: the training split resident
on the device as uint8, batches indexed, augmented (scale, rotation, flip with
landmarks) and degraded there (:class:`jasrbench.batcher.Batcher`), forward at the
precision ``auto`` resolves to and in the memory layout that follows it
(channels_last on CUDA and native-bf16 CPUs, NCHW otherwise; :mod:`jasrbench.runtime`),
``torch.compile`` as ``JASRBENCH_COMPILE=auto`` decides (:func:`jasrbench.step.compile_decision`), fixed-order
conv-bias/PReLU gradients if ``JASRBENCH_FIXED_ORDER_GRADS`` asks for them,
fused Adam on CUDA, no host synchronization inside a step.

``--compare-reference`` also measures the reference path — the same
architecture in fp32, contiguous NCHW, eager, each batch built per sample in
numpy/PIL on the host (warp, landmark maths, flip, bicubic LR), as the
authors' DataLoader does, copied to the device, loss read on the host every
step — alternating the two paths round by round so that both see the same
machine load. Compilation and warm-up steps are not timed.

    .venv/bin/python benchmarks/bench_train.py [--model jasrnet] [--batch 8] [--steps 3] [--rounds 3]
        [--compare-reference] [--prepared DIR] [--device cpu|cuda] [--precision auto|fp32|bf16]
        [--compile auto|on|off] [--json results/bench_train.json] [--profile PATH]

``--prepared`` is a folder holding ``300w/train.npz``; without it the shared
300W subset (``$JASRBENCH_TEST_DATA`` or ``../shared/datasets``) is prepared
into a temporary folder first. Peak memory: CUDA's peak allocation on a GPU;
on the CPU the process's peak resident set during that path's steps (Linux,
reset between phases through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jasrbench import runtime, settings, step
from jasrbench.batcher import Batcher
from jasrbench.data.augment import AugmentConfig
from jasrbench.data.split import PreparedSplit, load_split
from jasrbench.files import atomic_write_json
from jasrbench.models import build
from jasrbench.models.blocks import fixed_order_grads
from jasrbench.paths import test_data_root


# --- peak memory per phase ------------------------------------------------------------------------
def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return
    try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux ≥ 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mib(dev: torch.device) -> float | None:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --- the reference path: per-sample numpy/PIL batches, fp32 NCHW eager ------------------------------
class ReferenceBatches:
    """Batches built one face at a time on the host, as a per-sample Dataset + default collate does."""

    def __init__(self, data: PreparedSplit, augment: AugmentConfig, mirror: np.ndarray, seed: int):
        self.data, self.augment, self.mirror = data, augment, mirror
        self.rng = np.random.default_rng(seed)
        self.offset = data.context_offset

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cfg, ctx = self.augment, self.data.context[i]
        c, hr_size = ctx.shape[0], self.data.hr.shape[1]
        scale = self.rng.uniform(*cfg.scale)
        theta = np.deg2rad(self.rng.uniform(-cfg.rotation, cfg.rotation))
        flip = self.rng.random() < cfg.flip
        a = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / scale
        if flip:
            a = a @ np.diag([-1.0, 1.0])
        # PIL maps output corner coordinates to input ones: x_in = A·(x_out − c_out) + c_in.
        t = np.array([c / 2, c / 2]) - a @ np.array([hr_size / 2, hr_size / 2])
        coeffs = (a[0, 0], a[0, 1], t[0], a[1, 0], a[1, 1], t[1])
        hr = Image.fromarray(ctx).transform((hr_size, hr_size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
        lr = hr.resize((hr_size // 8, hr_size // 8), Image.BICUBIC)
        pts = (self.data.landmarks[i] + self.offset - (c - 1) / 2) @ np.linalg.inv(a).T + (hr_size - 1) / 2
        vis = self.data.visible[i].copy()
        if flip:
            pts, vis = pts[self.mirror], vis[self.mirror]
        to_chw = lambda im: np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255  # noqa: E731
        return to_chw(lr), to_chw(hr), pts.astype(np.float32), vis

    def batch(self, faces: np.ndarray, dev: torch.device) -> dict[str, torch.Tensor]:
        samples = [self.sample(int(i)) for i in faces]
        keys = ("lr", "hr", "landmarks", "visible")
        return {k: torch.from_numpy(np.stack([s[j] for s in samples])).to(dev) for j, k in enumerate(keys)}


def build_model(name: str, data: PreparedSplit, dev: torch.device,
                layout: torch.memory_format = torch.contiguous_format) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build(name, num_points=data.num_points)
    if hasattr(model, "set_protocol") and getattr(data, "protocol", None):
        model.set_protocol(data.protocol)
    model = model.to(dev)
    return model.to(memory_format=layout).train()


def reference_path(args, data: PreparedSplit, train_idx: np.ndarray, dev: torch.device) -> Callable[[int], None]:
    model = build_model(args.model, data, dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5, weight_decay=5e-4)
    batches = ReferenceBatches(data, AugmentConfig(), np.asarray(data.metadata["mirror_permutation"]), seed=0)
    rng = np.random.default_rng(1)

    def one_step(_: int) -> None:
        batch = batches.batch(rng.choice(train_idx, args.batch, replace=False), dev)
        losses = model.loss(model(batch["lr"]), batch)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        _ = {k: v.item() for k, v in losses.items()}  # the per-step log line

    one_step.model = model  # type: ignore[attr-defined]
    return one_step


def suite_path(args, data: PreparedSplit, train_idx: np.ndarray, dev: torch.device,
               precision: str, compiled: bool) -> Callable[[int], None]:
    model = build_model(args.model, data, dev, runtime.memory_format(dev, precision))
    if settings.load().fixed_order_grads:  # JASRBENCH_FIXED_ORDER_GRADS, as jasrbench train reads it
        fixed_order_grads(model)
    optimizer = step.make_optimizer(model, 5e-5, (0.9, 0.999), 5e-4, dev)
    loss_fn = step.loss_function(model, dev, precision, compiled)
    mirror = torch.tensor(data.metadata["mirror_permutation"])
    batcher = Batcher(data, train_idx, AugmentConfig(), mirror, dev, seed=0, batch_size=args.batch,
                      copies_per_epoch=1.0)
    steps = batcher.steps_per_epoch()

    def one_step(i: int) -> None:
        losses = loss_fn(batcher.batch(i // steps, i % steps))
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    one_step.model = model  # type: ignore[attr-defined]
    return one_step


def timed_phase(fn: Callable[[int], None], first: int, steps: int, dev: torch.device) -> tuple[list[float], float | None]:
    """Seconds of each of ``steps`` steps (the device synchronized around each) and the phase's peak memory."""
    reset_peak(dev)
    times = []
    for i in range(first, first + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        fn(i)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return times, peak_mib(dev)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="jasrnet")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per path per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two paths")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per path (compilation included)")
    parser.add_argument("--compare-reference", action="store_true")
    parser.add_argument("--prepared", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", choices=runtime.PRECISIONS)
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--json", type=Path, help="also write the result here (atomically)")
    parser.add_argument("--note", help="a line stored with the result (e.g. how loaded the machine was)")
    parser.add_argument("--profile", type=Path,
                        help="also write torch.profiler's table of one step of each path here (after the timing)")
    args = parser.parse_args()
    if min(args.batch, args.steps, args.rounds) < 1 or args.warmup < 0:
        parser.error("--batch, --steps and --rounds must be ≥ 1 and --warmup ≥ 0")

    with tempfile.TemporaryDirectory() as tmp:
        prepared = args.prepared
        if prepared is None:
            from jasrbench.data.prepare import prepare

            prepared = Path(tmp)
            prepare("300w", test_data_root() / "300W", prepared / "300w")
        data = load_split(prepared / "300w" / "train.npz")
    dev = runtime.resolve_device(args.device)
    runtime.configure_backends(dev)
    precision = runtime.resolve_precision(args.precision, dev)
    compiled = step.compile_decision({"on": True, "off": False}.get(args.compile, "auto"), dev.type).compile
    train_idx = np.arange(len(data))

    paths = {"suite": suite_path(args, data, train_idx, dev, precision, compiled)}
    if args.compare_reference:
        paths["reference"] = reference_path(args, data, train_idx, dev)
    warmup_s = {}
    for name, fn in paths.items():
        t0 = time.perf_counter()
        for i in range(args.warmup):
            fn(i)
        warmup_s[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in paths}
    peaks: dict[str, float | None] = dict.fromkeys(paths)
    position = args.warmup
    for r in range(args.rounds):
        # Alternate which path goes first, so neither always runs right after the other's allocations.
        for name in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
            t, peak = timed_phase(paths[name], position, args.steps, dev)
            times[name] += t
            if peak is not None:
                peaks[name] = max(peaks[name] or 0.0, peak)
        position += args.steps

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        tables = []
        for name, fn in paths.items():
            with profile(activities=acts) as prof:
                fn(position)
            tables.append(f"== {name} path, one step, batch {args.batch}, {runtime.cpu_capability()} ==\n"
                          + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        args.profile.write_text("\n\n".join(tables) + "\n")
    median = {name: statistics.median(t) for name, t in times.items()}
    model = paths["suite"].model  # type: ignore[attr-defined]
    result = {
        "model": args.model, "params": sum(p.numel() for p in model.parameters()), "batch": args.batch,
        "steps_per_round": args.steps, "rounds": args.rounds, "warmup_steps": args.warmup,
        **runtime.describe(dev, precision, compiled),
        "fixed_order_grads": bool(settings.load().fixed_order_grads and not compiled),
        "seconds_per_step_median": median["suite"], "img_per_s": args.batch / median["suite"],
        "peak_memory_mib": peaks["suite"], "warmup_s": warmup_s["suite"],
        "seconds_per_step": times["suite"],
        **({"note": args.note} if args.note else {}),
    }
    if args.compare_reference:
        result.update({
            "reference": "fp32, contiguous NCHW, eager, per-sample numpy/PIL batches on the host, plain Adam",
            "reference_seconds_per_step_median": median["reference"],
            "reference_img_per_s": args.batch / median["reference"],
            "reference_peak_memory_mib": peaks["reference"],
            "reference_seconds_per_step": times["reference"],
            "speedup": median["reference"] / median["suite"],
            # Per round (the two paths ran back to back): robust to load that drifts between rounds.
            "round_speedups": [sum(times["reference"][r * args.steps:(r + 1) * args.steps])
                               / sum(times["suite"][r * args.steps:(r + 1) * args.steps]) for r in range(args.rounds)],
        })
    print(json.dumps(result, indent=2))
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
