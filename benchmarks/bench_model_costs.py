"""Model costs: parameters, FLOPs per image, training and inference throughput.

For every registered model (or ``--models``) at registry defaults, writes one
row to ``results/model_costs.csv`` (atomically; pandas):

- ``parameters`` (all of ``parameters()``) and ``trainable_parameters``;
- ``flops_per_image``: one forward pass at batch 1 counted by
  ``torch.utils.flop_counter.FlopCounterMode``. torch counts **FLOPs = 2 × MACs**
  (a multiply-add is two operations) and only for convolutions, matmuls and
  attention; element-wise ops, pooling, pixel shuffle and the bicubic
  upsampling are not counted (bicubic therefore shows 0);
- ``train_img_per_s``: batch ``--batch`` (8), forward + loss + backward + Adam
  step, model and input in channels_last, ``--warmup`` untimed steps then
  ``--steps`` timed ones (empty for models with no weights);
- ``infer_img_per_s``: batch ``--batch``, ``torch.no_grad()``, channels_last,
  same warm-up/timed steps.

Throughput is on ``--device`` (default CPU; ``--bf16`` wraps forward and loss
in bf16 autocast). The numbers mean something only on an otherwise idle
machine: the CSV records the device, thread count and torch version.

Usage::

    .venv/bin/python benchmarks/bench_model_costs.py [--models jasrnet edsr] [--out results/model_costs.csv]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from jasrbench.data import degrade
from jasrbench.files import atomic_path
from jasrbench.models import FaceModel, available, build
from jasrbench.paths import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "results" / "model_costs.csv"
FLOP_CONVENTION = "FLOPs = 2*MACs; conv/matmul/attention only (torch.utils.flop_counter)"


def synthetic_batch(model: FaceModel, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A training batch of the right shapes (content does not matter for timing)."""
    gen = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, 3, degrade.HR_SIZE, degrade.HR_SIZE, generator=gen)
    landmarks = torch.rand(batch, model.num_points, 2, generator=gen) * (degrade.HR_SIZE - 33) + 16
    out = {
        "lr": degrade.make_lr(hr),
        "hr": hr,
        "landmarks": landmarks,
        "visible": torch.ones(batch, model.num_points, dtype=torch.bool),
    }
    out = {k: v.to(device) for k, v in out.items()}
    for k in ("lr", "hr"):
        out[k] = out[k].contiguous(memory_format=torch.channels_last)
    return out


def count_flops(model: FaceModel) -> int:
    """Forward FLOPs (2×MACs) for one image, as torch's flop counter counts them."""
    model = model.eval()
    lr = torch.rand(1, 3, degrade.LR_SIZE, degrade.LR_SIZE)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(lr)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step: ``warmup`` untimed calls, then the mean of ``steps`` timed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def train_throughput(model: FaceModel, batch: dict, steps: int, warmup: int, device, bf16: bool) -> float:
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, bf16):
            out = model(batch["lr"])
            loss = model.loss(out, batch)["total"]
        loss.backward()
        optimizer.step()

    return batch["lr"].shape[0] / time_steps(step, steps, warmup, device)


def infer_throughput(model: FaceModel, batch: dict, steps: int, warmup: int, device, bf16: bool) -> float:
    model.eval()

    def step():
        with torch.no_grad(), _autocast(device, bf16):
            model(batch["lr"])

    return batch["lr"].shape[0] / time_steps(step, steps, warmup, device)


def measure(name: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = build(name)
    row = {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops_per_image": count_flops(model),
    }
    row["gflops_per_image"] = row["flops_per_image"] / 1e9
    model = model.to(device=device, memory_format=torch.channels_last)
    batch = synthetic_batch(model, args.batch, device)
    trainable = model.trainable and row["trainable_parameters"] > 0
    row["train_img_per_s"] = (
        train_throughput(model, batch, args.steps, args.warmup, device, args.bf16) if trainable else float("nan")
    )
    row["infer_img_per_s"] = infer_throughput(model, batch, args.steps, args.warmup, device, args.bf16)
    return row


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=None, help="registry names (default: all registered)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV to write (default {DEFAULT_OUT})")
    p.add_argument("--batch", type=int, default=8, help="throughput batch size (default 8)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps (default 2)")
    p.add_argument("--device", default="cpu", help="torch device for throughput (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for forward and loss")
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--batch and --steps must be ≥ 1, --warmup ≥ 0")
    names = available()
    args.models = args.models or names
    unknown = [m for m in args.models if m not in names]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(names)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name in tqdm(args.models, desc="model costs", unit="model"):
        row = measure(name, args, device)
        row.update(
            batch=args.batch,
            steps=args.steps,
            warmup=args.warmup,
            device=str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
            threads=torch.get_num_threads(),
            bf16_autocast=args.bf16,
            memory_format="channels_last",
            flop_convention=FLOP_CONVENTION,
            torch_version=torch.__version__,
            machine=platform.machine(),
        )
        rows.append(row)
        tqdm.write(
            f"{name:22s} params {row['parameters']:>12,}  {row['gflops_per_image']:8.2f} GFLOPs  "
            f"train {row['train_img_per_s']:8.2f} img/s  infer {row['infer_img_per_s']:8.2f} img/s"
        )
    frame = pd.DataFrame(rows)
    with atomic_path(args.out, suffix=".csv.tmp") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    print(f"wrote {args.out} ({len(frame)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
