"""Speed of ``jasrbench prepare 300w`` on the shared 300W subset (2,229 real faces).

Runs the whole stage (read the .pts, decode each photograph once, crop HR 128² +
context 192², make the LR, write the split files and summary.json) into a
temporary folder outside the repository, ``--repeat`` times per ``--workers``
value, and prints faces/s (best of the repeats: the least disturbed by other
processes). The number means something only on an otherwise idle machine; the
JSON (``--json``, written atomically) records the CPU count, torch version and
every timing.

Usage::

    .venv/bin/python benchmarks/bench_prepare.py [--raw ../shared/datasets/300W] [--workers 1 2] [--repeat 2]
        [--json results/bench_prepare.json]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from jasrbench.data.prepare import prepare
from jasrbench.files import atomic_write_json
from jasrbench.paths import test_data_root


def bench(raw: Path, workers: int, repeat: int) -> dict:
    times, faces = [], 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
            start = time.perf_counter()
            summary = prepare("300w", raw, Path(tmp) / "300w", workers=workers)
            times.append(time.perf_counter() - start)
            faces = sum(summary["faces"].values())
    best = min(times)
    return {"workers": workers, "faces": faces, "seconds": times, "best_seconds": best, "faces_per_s": faces / best}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, default=test_data_root() / "300W", help="300W root (official layout)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="decoding threads to compare")
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting (the best counts)")
    parser.add_argument("--json", type=Path, help="also write the results here (e.g. results/bench_prepare.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for w in args.workers:
        row = bench(args.raw, w, args.repeat)
        rows.append(row)
        runs = ", ".join(f"{s:.1f}" for s in row["seconds"])
        print(f"prepare 300w, {row['faces']} faces, {w} worker(s): {row['faces_per_s']:.0f} faces/s "
              f"(best of {args.repeat}: {row['best_seconds']:.1f} s; runs: {runs} s)")
    if args.json:
        atomic_write_json(args.json, {
            "benchmark": "prepare 300w (shared subset)",
            "raw": str(args.raw),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "note": "shared machine: approximate",
            "results": rows,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
