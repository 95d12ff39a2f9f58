"""Metric throughput on the 554 300W common-test faces: batched torch vs a per-image scikit-image loop.

The faces are the HR crops (landmark box, the suite's crop rule) and their
bicubic ×8 reconstructions (``make_lr`` then ``upsample``), both 8-bit. Timed:

- ``torch``: :func:`jasrbench.metrics.image_quality.psnr_ssim` on the whole
  batch (face regions, standard convention): Y conversion, PSNR and SSIM of
  all 554 faces in one call;
- ``skimage``: the reference loop — per face, Y from the 8-bit RGB (numpy),
  the face-region crop, ``peak_signal_noise_ratio`` and
  ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``.

Both produce the same numbers (checked here too: max abs differences are
printed). The torch path is timed with 1 thread and with torch's default
(on a busy machine torch's thread pool can be much slower than one thread;
the best counts). Each timing is the best of ``--repeat`` runs (the least disturbed by
other processes); numbers mean something only on an otherwise idle machine.
Results go to ``--json`` (default ``results/bench_metrics.json``), written
atomically, with the CPU count, torch threads and versions.

Usage::

    .venv/bin/python benchmarks/bench_metrics.py [--repeat 5] [--threads 1 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import skimage
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jasrbench.data import degrade
from jasrbench.data.crop import crop_face
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import landmark_box, read_pts
from jasrbench.files import atomic_write_json
from jasrbench.metrics import image_quality as iq
from jasrbench.paths import REPO_ROOT, test_data_root


def load_common_test(root: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted((root / "lfpw" / "testset").glob("*.pts")) + sorted((root / "helen" / "testset").glob("*.pts"))
    hrs, boxes = [], []
    for f in files:
        pts = read_pts(f)
        hr, _, mapping = crop_face(load_rgb(f.with_suffix(".jpg")), landmark_box(pts))
        hrs.append(hr)
        boxes.append(landmark_box(mapping.apply(pts)))
    return np.stack(hrs), np.stack(boxes)


def skimage_loop(sr_u8: np.ndarray, hr_u8: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.array([65.481, 128.553, 24.966]) / 255.0
    psnr, ssim = [], []
    h, wd = hr_u8.shape[1:3]
    for i in range(len(sr_u8)):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        rr = slice(max(0, math.ceil(y0)), min(h - 1, math.floor(y1)) + 1)
        cc = slice(max(0, math.ceil(x0)), min(wd - 1, math.floor(x1)) + 1)
        a = 16.0 + sr_u8[i, rr, cc].astype(np.float64) @ w
        b = 16.0 + hr_u8[i, rr, cc].astype(np.float64) @ w
        psnr.append(peak_signal_noise_ratio(b, a, data_range=255))
        ssim.append(structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=255))
    return np.array(psnr), np.array(ssim)


def best_of(fn, repeat: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), times, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, default=test_data_root() / "300W", help="300W root (official layout)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per method (the best counts)")
    parser.add_argument("--threads", type=int, nargs="+", help="torch CPU thread counts to time (default: 1 and torch's)")
    parser.add_argument("--device", default="cpu", help="device of the torch implementation")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench_metrics.json")
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    args.threads = sorted(set(args.threads or [1, default_threads]))
    hr_u8, boxes = load_common_test(args.raw)
    hr_t = degrade.to_tensor(hr_u8)
    sr_u8 = degrade.to_uint8(degrade.upsample(degrade.make_lr(hr_t)))
    n = len(hr_u8)
    device = torch.device(args.device)
    sr_d, hr_d, boxes_d = degrade.to_tensor(sr_u8).to(device), hr_t.to(device), torch.from_numpy(boxes).to(device)

    def run_torch():
        out = iq.psnr_ssim(sr_d, hr_d, boxes_d)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    runs = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        run_torch()  # warm-up (band matrices, allocator, CUDA context)
        runs[threads] = best_of(run_torch, args.repeat)
    torch.set_num_threads(default_threads)
    best_threads = min(runs, key=lambda k: runs[k][0])
    t_torch, _, ours = runs[best_threads]
    t_sk, sk_times, (ref_psnr, ref_ssim) = best_of(lambda: skimage_loop(sr_u8, hr_u8, boxes), args.repeat)
    d_psnr = float(np.abs(ours["psnr"].cpu().numpy() - ref_psnr).max())
    d_ssim = float(np.abs(ours["ssim"].cpu().numpy() - ref_ssim).max())
    ratio = t_sk / t_torch
    print(f"{n} faces (300W common test, HR vs bicubic ×8), PSNR+SSIM on Y in face boxes")
    for threads, (t, _, _) in runs.items():
        print(f"  torch batched ({device}, {threads} thread(s)): {t * 1e3:8.1f} ms  ({n / t:8.0f} faces/s)")
    print(f"  scikit-image per-image loop:          {t_sk * 1e3:8.1f} ms  ({n / t_sk:8.0f} faces/s)")
    print(f"  ratio (best torch / skimage): {ratio:.1f}×   agreement: max |ΔPSNR| {d_psnr:.2e} dB, "
          f"max |ΔSSIM| {d_ssim:.2e}")
    print(f"  means: PSNR {float(ref_psnr.mean()):.3f} dB, SSIM {float(ref_ssim.mean()):.4f}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    atomic_write_json(args.json, {
        "faces": n, "device": str(device), "cpu_count": os.cpu_count(), "load_average": load,
        "torch": {str(k): {"seconds": v[1], "best_s": v[0], "faces_per_s": n / v[0]} for k, v in runs.items()},
        "torch_best_threads": best_threads, "torch_best_s": t_torch, "torch_faces_per_s": n / t_torch,
        "skimage_seconds": sk_times, "skimage_best_s": t_sk, "skimage_faces_per_s": n / t_sk, "ratio": ratio,
        "max_abs_diff_psnr_db": d_psnr, "max_abs_diff_ssim": d_ssim,
        "mean_psnr": float(ref_psnr.mean()), "mean_ssim": float(ref_ssim.mean()),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "skimage": skimage.__version__,
                     "numpy": np.__version__},
        "note": "best of the repeats; on a shared machine the numbers are approximate",
    })
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
