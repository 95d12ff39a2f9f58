"""Training throughput (img/s) of a model with the suite's own data path (issue 5).

Each step is exactly what ``jasrbench train`` does: faces drawn from the
prepared 300W training split's context crops, augmented on the device
(scale, rotation, flip), LR made from the augmented HR in torch, forward in
channels_last (bf16 autocast on CUDA), the model's loss, backward, Adam step.

    .venv/bin/python benchmarks/bench_train.py [--model jasrnet] [--batch 8] [--steps 10]
        [--prepared DIR] [--device cpu|cuda] [--json results/bench_train.json]

``--prepared`` is a folder holding ``300w/train.npz``; without it the shared
300W subset (``$JASRBENCH_TEST_DATA`` or ``../shared/datasets``) is prepared
into a temporary folder first (≈ 15 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jasrbench.data.augment import AugmentConfig
from jasrbench.data.split import load_split
from jasrbench.io import atomic_write_json
from jasrbench.models import build
from jasrbench.paths import test_data_root
from jasrbench.train import forward_loss, generator, training_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="jasrnet")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prepared", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the result here (atomically)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        prepared = args.prepared
        if prepared is None:
            from jasrbench.data.prepare import prepare

            prepared = Path(tmp)
            prepare("300w", test_data_root() / "300W", prepared / "300w")
        data = load_split(prepared / "300w" / "train.npz")
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = build(args.model, num_points=data.num_points).to(dev).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5, weight_decay=5e-4)
    mirror = torch.tensor(data.metadata["mirror_permutation"])
    augment = AugmentConfig()
    times = []
    for step in range(args.warmup + args.steps):
        idx = np.sort(torch.randperm(len(data), generator=generator(0, step))[: args.batch].numpy())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        batch = training_batch(data, idx, augment, generator(0, step, 1), mirror, dev)
        losses = forward_loss(model, batch, dev)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    result = {
        "model": args.model, "params": sum(p.numel() for p in model.parameters()), "batch": args.batch,
        "steps": args.steps, "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "seconds_per_step_median": median, "img_per_s": args.batch / median,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
