"""``jasrbench calibrate``: the Bicubic row on 300W common over crop margins × protocols × LR JPEG.

The Bicubic row needs no training, so it isolates the degradation protocol. For each grid point
the LR is made and bicubic-upsampled by the protocol and scored with the suite's metrics; the
results go to ``<out>/bicubic_300w_common.csv`` (distance from the paper's 21.36 / 0.594, and
whether both are within 0.25 dB / 0.01) and ``.png``. The command prints the grid's best joint
fit without JPEG, so the choice of :data:`jasrbench.data.protocols.PAPER_MARGIN` can be rechecked.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..files import atomic_path
from . import degrade, protocols
from .images import load_rgb
from .records import BadInput

log = logging.getLogger(__name__)

# The paper's Table 1, Bicubic on 300W (PSNR dB, SSIM), and the tolerance the suite accepts.
PAPER_PSNR, PAPER_SSIM = 21.36, 0.594
TOL_PSNR, TOL_SSIM = 0.25, 0.01
DEFAULT_MARGINS = tuple(round(1.3 + 0.05 * i, 2) for i in range(15))  # 1.30 … 2.00
DEFAULT_JPEG = (None, 75)
CSV_NAME = "bicubic_300w_common.csv"
PLOT_NAME = "bicubic_300w_common.png"


def common_faces(raw: Path, split: str = "common", max_faces: int | None = None, workers: int = 2):
    """The records of 300W ``split`` and their decoded photographs (each decoded once)."""
    from .prepare import read_plan

    plan = read_plan("300w", Path(raw), BadInput(False, root=Path(raw)))
    records = list(plan.splits.get(split) or [])
    if not records:
        reason = plan.unavailable.get(split, "no faces")
        raise DataError(raw, f"300W {split} cannot be built: {reason}")
    if max_faces is not None:
        records = records[:max_faces]
    paths = sorted({r.image for r in records})
    with ThreadPoolExecutor(max(1, workers)) as pool:
        images = dict(zip(paths, pool.map(load_rgb, paths), strict=True))
    return plan, records, images


def crop_at(plan, records, images, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """HR crops (N×3×128×128 float) and face boxes (N×4, HR pixels) of every face at ``margin``."""
    from .prepare import crop_record

    faces = [crop_record(r, images[r.image], outside_policy=plan.outside_policy, margin=margin) for r in records]
    hr = degrade.to_tensor(np.stack([f.hr for f in faces]))
    return hr, torch.from_numpy(np.stack([f.box for f in faces]))


def bicubic_row(hr: torch.Tensor, boxes: torch.Tensor, protocol: protocols.Protocol,
                chunk: int = 256) -> tuple[float, float]:
    """Mean face-box PSNR and SSIM of the protocol's LR, upsampled by the protocol's bicubic."""
    from ..metrics import image_quality

    psnr, ssim = [], []
    for i in range(0, len(hr), chunk):
        h = hr[i : i + chunk]
        sr = degrade.quantize(degrade.upsample(degrade.make_lr(h, protocol=protocol), protocol=protocol))
        values = image_quality.psnr_ssim(sr, h, boxes[i : i + chunk])
        psnr.append(values["psnr"].double())
        ssim.append(values["ssim"].double())
    return float(torch.cat(psnr).mean()), float(torch.cat(ssim).mean())


def calibrate(raw: str | Path, out: str | Path, *, margins=DEFAULT_MARGINS, jpeg=DEFAULT_JPEG,
              protocol_names=("paper", "clean"), max_faces: int | None = None, plot: bool = True) -> pd.DataFrame:
    """Compute the grid, write the CSV (and plot) under ``out``; returns the table."""
    margins = [float(m) for m in margins]
    if not margins or any(not m > 0 for m in margins):
        raise DataError(None, f"calibration margins must be positive numbers, got {margins}")
    bases = [protocols.get(name) for name in protocol_names]
    plan, records, images = common_faces(Path(raw), max_faces=max_faces)
    rows: list[dict[str, Any]] = []
    for margin in margins:
        hr, boxes = crop_at(plan, records, images, margin)
        for base in bases:
            for quality in jpeg:
                p = base.with_(margin=margin, jpeg_quality=quality)
                psnr, ssim = bicubic_row(hr, boxes, p)
                rows.append({"margin": margin, "protocol": base.name, "jpeg_quality": quality or 0,
                             "faces": len(hr), "psnr": round(psnr, 4), "ssim": round(ssim, 4),
                             "d_psnr": round(psnr - PAPER_PSNR, 4), "d_ssim": round(ssim - PAPER_SSIM, 4),
                             "within_tolerance": abs(psnr - PAPER_PSNR) <= TOL_PSNR and abs(ssim - PAPER_SSIM) <= TOL_SSIM})
                log.info("margin %.2f %s jpeg %s: %.3f dB / %.4f", margin, base.name, quality or "off", psnr, ssim)
    table = pd.DataFrame(rows)
    out = Path(out)
    with atomic_path(out / CSV_NAME, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    if plot:
        plot_calibration(table, out / PLOT_NAME)
    return table


def best_fit(table: pd.DataFrame, protocol: str = "paper", jpeg_quality: int = 0) -> pd.Series:
    """The row of ``protocol`` (and JPEG setting) closest to the paper in units of the tolerance (worse of the two)."""
    rows = table[(table["protocol"] == protocol) & (table["jpeg_quality"] == jpeg_quality)]
    score = np.maximum((rows["d_psnr"] / TOL_PSNR).abs(), (rows["d_ssim"] / TOL_SSIM).abs())
    return rows.loc[score.idxmin()]


def plot_calibration(table: pd.DataFrame, path: Path) -> None:
    """PSNR and SSIM against the margin, one line per protocol × JPEG; the paper's values as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    styles = {"paper": "tab:red", "clean": "tab:blue"}
    for (name, quality), rows in table.groupby(["protocol", "jpeg_quality"], sort=False):
        label = f"{name}" + (f", LR JPEG q{quality}" if quality else "")
        kw = {"color": styles.get(name, "k"), "marker": "o", "ms": 3, "ls": "--" if quality else "-", "label": label}
        axes[0].plot(rows["margin"], rows["psnr"], **kw)
        axes[1].plot(rows["margin"], rows["ssim"], **kw)
    for ax, value, tol, what in ((axes[0], PAPER_PSNR, TOL_PSNR, "PSNR (dB)"), (axes[1], PAPER_SSIM, TOL_SSIM, "SSIM")):
        ax.axhline(value, color="k", lw=1, label=f"paper (Table 1): {value}")
        ax.axhspan(value - tol, value + tol, color="k", alpha=0.08, label=f"± {tol}")
        ax.axvline(protocols.PAPER_MARGIN, color="tab:red", lw=0.8, ls=":",
                   label=f"paper protocol's margin {protocols.PAPER_MARGIN}")
        ax.axvline(protocols.CLEAN_MARGIN, color="tab:blue", lw=0.8, ls=":",
                   label=f"clean protocol's margin {protocols.CLEAN_MARGIN}")
        ax.set_xlabel("crop margin (× longer side of the landmark box)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    faces = int(table["faces"].iloc[0])
    axes[0].set_title(f"Bicubic ×8, 300W common ({faces} faces), face-box Y PSNR")
    axes[1].set_title("face-box Y SSIM")
    # The series legend once (right); the left panel names only its own reference line and band.
    handles, labels = axes[0].get_legend_handles_labels()
    keep = [i for i, lab in enumerate(labels) if lab.startswith(("paper (Table", "±"))]
    axes[0].legend([handles[i] for i in keep], [labels[i] for i in keep], fontsize=7, loc="upper right")
    axes[1].legend(fontsize=7, loc="upper right")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- CLI

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", default="../shared/datasets/300W", help="300W in its official layout (needs the common test set)")
    parser.add_argument("--out", default="results/calibration", help=f"output folder ({CSV_NAME}, {PLOT_NAME})")
    parser.add_argument("--margins", type=float, nargs="+", default=list(DEFAULT_MARGINS), help="crop margins to try")
    parser.add_argument("--jpeg", type=int, nargs="*", default=[75],
                        help="LR JPEG qualities to try besides no JPEG (default: 75; none: --jpeg)")
    parser.add_argument("--max-faces", type=int, default=None, help="only the first N common faces (a quick look)")


def run(args: argparse.Namespace) -> int:
    table = calibrate(args.raw, args.out, margins=args.margins, jpeg=[None, *args.jpeg], max_faces=args.max_faces)
    best = best_fit(table)
    print(table.to_string(index=False))
    print(f"best paper-protocol margin without JPEG: {best['margin']:.2f} → {best['psnr']:.2f} dB / {best['ssim']:.3f} "
          f"(paper {PAPER_PSNR} / {PAPER_SSIM}); protocols.PAPER_MARGIN = {protocols.PAPER_MARGIN}")
    print(f"wrote {Path(args.out) / CSV_NAME} and {Path(args.out) / PLOT_NAME}")
    return 0
