"""The report's figures (matplotlib): the visual comparison grid, CED curves, training curves
(the drawing primitives and the training stage's sample grid: :mod:`jasrbench.plotting`).

Colours follow the paper's Figure 1b: predicted landmarks green, ground truth red.
The report's figures are written as PNG and PDF at a fixed size (``FIG_WIDTH``
inches wide, ``DPI`` dots per inch: 1,400 px), readable at the width of a
two-column paper's full page; :func:`jasrbench.plotting.save_figure` writes atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patheffects as path_effects  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..files import atomic_path  # noqa: E402
from ..plotting import DPI, PRED_COLOUR, TRUE_COLOUR  # noqa: E402,F401 (the report draws in the same colours)

FIG_WIDTH = 7.0  # inches: a full page width
FORMATS = ("png", "pdf")
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
            "#e6550d", "#31a354", "#756bb1", "#636363", "#9c9ede", "#cedb9c"]
_RC = {"font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
       "legend.fontsize": 6, "axes.formatter.useoffset": False}


def save_all(fig, stem: str | Path) -> list[Path]:
    """``stem.png`` and ``stem.pdf`` at the figure's own size; closes the figure."""
    stem = Path(stem)
    paths = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, dpi=DPI, format=fmt, metadata=_metadata(fmt))
        paths.append(path)
    plt.close(fig)
    return paths


def _metadata(fmt: str) -> dict:
    """No creation dates: the same figure gives the same bytes (DVC sees no change)."""
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "jasrbench"}
    if fmt == "png":
        return {"Software": "jasrbench"}
    return {}


def pixel_size(figsize: tuple[float, float]) -> tuple[int, int]:
    """(width, height) in pixels of a PNG written by :func:`save_all`."""
    return round(figsize[0] * DPI), round(figsize[1] * DPI)


# --- the visual comparison (the paper's Figure 4, with Figure 1b's landmarks) ------------------------
@dataclass
class GridColumn:
    label: str
    images: np.ndarray  # N×H×W×3 uint8 (LR columns are shown with nearest-neighbour upscaling)
    points: np.ndarray | None = None  # N×K×2 landmarks drawn on the images (HR pixel coordinates)
    colour: str = PRED_COLOUR
    captions: Sequence[str] | None = None  # one short text per face (e.g. its PSNR)


GRID_LEFT, GRID_TOP, GRID_BOTTOM, GRID_GAP, GRID_RIGHT = 0.22, 0.30, 0.05, 0.03, 0.02  # inches
GRID_MAX_PANEL = 1.25  # inches: few columns make a narrower figure, not giant faces


def grid_panel(n_cols: int) -> float:
    """Side of one square panel: the columns fill ``FIG_WIDTH``, up to ``GRID_MAX_PANEL`` each."""
    return min(GRID_MAX_PANEL, (FIG_WIDTH - GRID_LEFT - GRID_RIGHT - GRID_GAP * (n_cols - 1)) / n_cols)


def grid_figsize(n_rows: int, n_cols: int) -> tuple[float, float]:
    """Size of the comparison grid (inches)."""
    panel = grid_panel(n_cols)
    return (GRID_LEFT + GRID_RIGHT + n_cols * panel + GRID_GAP * (n_cols - 1),
            GRID_TOP + GRID_BOTTOM + n_rows * panel + GRID_GAP * (n_rows - 1))


def comparison_grid(columns: Sequence[GridColumn], row_labels: Sequence[str], stem: str | Path) -> list[Path]:
    """Rows = faces, columns = LR / bicubic / each model / HR, landmarks overlaid; PNG + PDF."""
    n_rows, n_cols = len(row_labels), len(columns)
    width, height = grid_figsize(n_rows, n_cols)
    panel = grid_panel(n_cols)
    marker = 2.5 * panel**2  # points²: ~0.9 on the 0.6-inch panels of a full grid
    caption_size = 5 if panel < 0.8 else 6
    with plt.rc_context(_RC):
        fig = plt.figure(figsize=(width, height))
        for j, col in enumerate(columns):
            for i in range(n_rows):
                x0 = GRID_LEFT + j * (panel + GRID_GAP)
                y0 = height - GRID_TOP - (i + 1) * panel - i * GRID_GAP
                ax = fig.add_axes((x0 / width, y0 / height, panel / width, panel / height))
                image = col.images[i]
                size = image.shape[0]
                ax.imshow(image, interpolation="nearest" if size <= 32 else "antialiased",
                          extent=(-0.5, 127.5, 127.5, -0.5))
                ax.set_xlim(-0.5, 127.5)
                ax.set_ylim(127.5, -0.5)
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_linewidth(0.4)
                if col.points is not None:
                    pts = col.points[i]
                    ax.scatter(pts[:, 0], pts[:, 1], s=marker, c=col.colour, linewidths=0)
                if col.captions is not None and col.captions[i]:
                    text = ax.text(3, 124, col.captions[i], color="white", fontsize=caption_size, va="bottom",
                                   ha="left")
                    text.set_path_effects([path_effects.withStroke(linewidth=1.2, foreground="black")])
                if i == 0:
                    ax.set_title(col.label, fontsize=7, pad=2)
                if j == 0:
                    ax.set_ylabel(row_labels[i], fontsize=5.5, labelpad=2)
        return save_all(fig, stem)


# --- CED curves --------------------------------------------------------------------------------------
@dataclass
class Curve:
    label: str
    key: str  # the model (colour)
    x: np.ndarray  # NME ×100
    y: np.ndarray  # fraction of images with NME ≤ x
    auc: float | None = None
    dashed: bool = False


CED_HEIGHT = 2.7
TRAINING_FIGSIZE = (FIG_WIDTH, 3.6)


def colours(keys: Sequence[str]) -> dict[str, str]:
    """A fixed colour per key, in the given order."""
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}


def _margins(fig, width: float, height: float, *, left: float = 0.45, right: float = 0.1, top: float = 0.25,
             bottom: float = 0.4, wspace: float = 0.3) -> None:
    """Fixed margins in inches (faster than constrained layout, and the same on every run)."""
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=wspace)


# Right margin (inches) kept for a single CED panel's legend; the figure widens past it when needed.
CED_LEGEND_MARGIN = 1.45


def ced_figsize(n_panels: int) -> tuple[float, float]:
    """A single panel (legend beside it) is a column wide; several panels fill ``FIG_WIDTH``."""
    return (4.4 if n_panels <= 1 else FIG_WIDTH), CED_HEIGHT


def ced_figure(panels: Sequence[tuple[str, Sequence[Curve]]], stem: str | Path, palette: dict[str, str],
               threshold: float = 8.0, max_error: float = 10.0) -> list[Path]:
    """One panel per (title, curves): fraction of images with NME ≤ x, AUC@0.08 in the legend; PNG + PDF.

    A single panel keeps its legend to its right; several panels carry their legends inside.
    """
    width, height = ced_figsize(len(panels))
    single = len(panels) <= 1
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(width, height), squeeze=False, sharey=True)
        _margins(fig, width, height, right=CED_LEGEND_MARGIN if single else 0.1, wspace=0.12)
        for ax, (title, curves) in zip(axes[0], panels, strict=False):
            for c in curves:
                label = c.label + (f"  {c.auc:.3f}" if c.auc is not None else "")
                ax.step(c.x, c.y, where="post", color=palette.get(c.key), lw=1.0, ls="--" if c.dashed else "-",
                        label=label)
            ax.axvline(threshold, color="0.5", lw=0.6, ls=":")
            ax.set_xlim(0, max_error)
            ax.set_ylim(0, 1.0)
            ax.set_xlabel("NME (×100)")
            ax.set_title(title)
            ax.grid(alpha=0.25, lw=0.4)
            where = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)} if single else {"loc": "lower right"}
            legend = ax.legend(frameon=False, handlelength=1.6, title="model  AUC@0.08", title_fontsize=6, **where)
            if single:  # widen the figure until the legend beside the panel fits (long labels lost their AUC)
                needed = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.02 * width + 0.1
                if needed > CED_LEGEND_MARGIN:
                    width += needed - CED_LEGEND_MARGIN
                    fig.set_size_inches(width, height)
                    _margins(fig, width, height, right=needed, wspace=0.12)
        axes[0][0].set_ylabel("fraction of test images")
        if not panels:
            axes[0][0].text(0.5, 0.5, "no landmark model in these results", ha="center", va="center",
                            transform=axes[0][0].transAxes)
        return save_all(fig, stem)


# --- training curves ---------------------------------------------------------------------------------
TRAINING_PANELS = (("loss_total", "training loss (log)", True), ("val_psnr", "validation PSNR (dB)", False),
                   ("val_ssim", "validation SSIM", False), ("val_nme", "validation NME (×100)", False))
_MIN_SPAN = {"val_psnr": 0.5, "val_ssim": 0.01, "val_nme": 0.5}  # y-range floor: flat curves stay readable


def training_curves(histories: dict[str, pd.DataFrame], labels: dict[str, str], stem: str | Path,
                    palette: dict[str, str], dashed: Sequence[str] = ()) -> list[Path]:
    """One panel per metric of ``history.csv`` (loss, validation PSNR/SSIM/NME), one line per model."""
    panels = [p for p in TRAINING_PANELS if any(p[0] in h.columns and h[p[0]].notna().any()
                                                for h in histories.values())]
    width, height = TRAINING_FIGSIZE
    legend_rows = -(-len(histories) // 6)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, max(1, len(panels)), figsize=TRAINING_FIGSIZE, squeeze=False)
        _margins(fig, width, height, bottom=0.42 + 0.13 * legend_rows, wspace=0.4)
        handles: dict[str, object] = {}
        for ax, (column, title, log) in zip(axes[0], panels, strict=False):
            for key, hist in histories.items():
                if column not in hist.columns or not hist[column].notna().any():
                    continue
                values = hist[column]
                if log:
                    values = values.where(values > 0)
                (line,) = ax.plot(hist["epoch"], values, color=palette.get(key), lw=1.0, marker="o", ms=1.8,
                                  ls="--" if key in dashed else "-", label=labels.get(key, key))
                handles.setdefault(labels.get(key, key), line)
            if log:
                ax.set_yscale("log")
            elif column in _MIN_SPAN:
                lo, hi = ax.get_ylim()
                if hi - lo < _MIN_SPAN[column]:
                    mid = (hi + lo) / 2
                    ax.set_ylim(mid - _MIN_SPAN[column] / 2, mid + _MIN_SPAN[column] / 2)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.25, lw=0.4)
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="lower center", bbox_to_anchor=(0.5, 0.0),
                       ncols=min(6, len(handles)), frameon=False, handlelength=1.8, columnspacing=1.0)
        return save_all(fig, stem)
