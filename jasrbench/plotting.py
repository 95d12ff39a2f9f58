"""Drawing primitives shared by the training stage (its ``samples.png``) and the report's figures.

Colours follow the paper's Figure 1b: predicted landmarks green, ground truth red. Kept apart from
:mod:`jasrbench.report.figures` so that a report figure's setting is not a code dependency of training.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .files import atomic_path  # noqa: E402

PRED_COLOUR = "#00c000"
TRUE_COLOUR = "#e00000"
DPI = 200


def _show(ax, image: np.ndarray, title: str | None = None) -> None:
    ax.imshow(image, interpolation="nearest" if image.shape[0] <= 32 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _points(ax, pts: np.ndarray | None, colour: str, scale: float = 1.0, size: float = 2.5) -> None:
    if pts is not None and len(pts):
        ax.scatter(pts[:, 0] * scale, pts[:, 1] * scale, s=size, c=colour, linewidths=0)


def save_figure(fig, path: str | Path, *, tight: bool = True, dpi: int = DPI) -> None:
    """Save ``fig`` atomically in the format of ``path``'s suffix and close it.

    ``tight=False`` keeps the figure's own size (``figsize × dpi`` pixels).
    """
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, format=path.suffix.lstrip("."))
    plt.close(fig)


def sample_grid(
    lr: np.ndarray,
    sr: np.ndarray,
    hr: np.ndarray,
    true_points: np.ndarray | None,
    pred_points: np.ndarray | None,
    path: str | Path,
    title: str = "",
) -> None:
    """Rows = faces; columns LR (16×16, nearest) / SR with predicted landmarks / HR with true ones."""
    n = len(hr)
    fig, axes = plt.subplots(n, 3, figsize=(3 * 1.2, n * 1.25), squeeze=False)
    for i in range(n):
        _show(axes[i, 0], lr[i], "LR 16×16" if i == 0 else None)
        _show(axes[i, 1], sr[i], "SR" if i == 0 else None)
        if pred_points is not None:
            _points(axes[i, 1], pred_points[i], PRED_COLOUR)
        _show(axes[i, 2], hr[i], "HR" if i == 0 else None)
        if true_points is not None and true_points.shape[1]:
            _points(axes[i, 2], true_points[i], TRUE_COLOUR)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    # ~1 screen pixel per image pixel (1.2-inch panels of 128-px faces): small enough to commit 19 of them.
    save_figure(fig, path, dpi=110)
