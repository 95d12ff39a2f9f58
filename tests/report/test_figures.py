"""Figures of the report: PNG + PDF at the stated size, landmarks where they belong, deterministic faces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jasrbench.report import build, figures

STEMS = ("comparison", "ced", "ced_ablations", "training_curves", "training_curves_ablations")


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_every_figure_in_png_and_pdf(results_tree):
    for stem in STEMS:
        png, pdf = results_tree.figures / f"{stem}.png", results_tree.figures / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000, stem
    assert not [p for p in results_tree.figures.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_pixel_sizes(results_tree):
    # comparison: LR, bicubic, JASRNet (the tree's SR models outside Tables 4-5), HR; 4 faces.
    assert Image.open(results_tree.figures / "comparison.png").size == figures.pixel_size(figures.grid_figsize(4, 4))
    assert Image.open(results_tree.figures / "ced.png").size == figures.pixel_size(figures.ced_figsize(1))
    assert Image.open(results_tree.figures / "ced_ablations.png").size == figures.pixel_size(figures.ced_figsize(1))
    for stem in ("training_curves", "training_curves_ablations"):
        assert Image.open(results_tree.figures / f"{stem}.png").size == figures.pixel_size(figures.TRAINING_FIGSIZE)
    # A full grid (LR, bicubic, 8 models, HR) is a page wide: 7 in at 200 dpi; fewer columns, narrower.
    assert figures.pixel_size(figures.grid_figsize(4, 11))[0] == 1400
    assert figures.pixel_size(figures.grid_figsize(4, 4))[0] < 1400


def _panel(image: np.ndarray, row: int, col: int, n_rows: int, n_cols: int) -> np.ndarray:
    """Pixels of one panel of the comparison grid (from the layout constants), 2 px inset."""
    panel = figures.grid_panel(n_cols)
    x0 = (figures.GRID_LEFT + col * (panel + figures.GRID_GAP)) * figures.DPI
    y0 = (figures.GRID_TOP + row * (panel + figures.GRID_GAP)) * figures.DPI
    size = panel * figures.DPI
    return image[int(y0) + 2:int(y0 + size) - 2, int(x0) + 2:int(x0 + size) - 2]


def _count(pixels: np.ndarray, colour: str) -> int:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - rgb).max(-1) < 40).sum())


def test_comparison_grid_shows_faces_and_landmarks(results_tree):
    image = _png(results_tree.figures / "comparison.png")
    for row in range(4):
        lr, bicubic, jasrnet, hr = (_panel(image, row, c, 4, 4) for c in range(4))
        assert _count(hr, figures.TRUE_COLOUR) > 60  # 68 true points, red, on HR
        assert _count(jasrnet, figures.PRED_COLOUR) > 20  # JASRNet's predicted points, green
        for panel in (lr, bicubic):
            assert _count(panel, figures.TRUE_COLOUR) + _count(panel, figures.PRED_COLOUR) < 5
        assert lr.std() > 10 and bicubic.std() > 10 and hr.std() > 10  # faces, not blank panels
    # The faces are fixed by name: the same for every run of the report, listed in the README.
    readme = (results_tree.results / "README.md").read_text()
    names = sorted(pd.read_csv(
        results_tree.results / "eval" / "bicubic-300w" / "300w_common" / "per_image.csv")["name"])
    for name in build.choose_faces(names, 4):
        assert f"`{name}`" in readme


def test_choose_faces_is_deterministic_and_spread():
    names = [f"helen/testset/{i:04d}" for i in range(30)] + [f"lfpw/testset/{i:04d}" for i in range(20)]
    chosen = build.choose_faces(list(reversed(names)), 4)
    assert chosen == build.choose_faces(names, 4) and len(set(chosen)) == 4
    assert any(n.startswith("lfpw") for n in chosen) and any(n.startswith("helen") for n in chosen)
    assert build.choose_faces(names[:3], 4) == sorted(names[:3])


def test_report_is_deterministic(results_tree, tmp_path):
    """Re-running the report on the same results writes the same bytes (DVC sees no change)."""
    report = build.build_report(results_tree.results, tmp_path, models_dir=results_tree.models,
                                prepared=results_tree.prepared, costs=results_tree.costs,
                                params=results_tree.params)
    for path in sorted((results_tree.results / "tables").iterdir()):
        assert (tmp_path / "tables" / path.name).read_bytes() == path.read_bytes(), path.name
    for stem in STEMS:
        for ext in ("png", "pdf"):
            name = f"{stem}.{ext}"
            assert (tmp_path / "figures" / name).read_bytes() == (results_tree.figures / name).read_bytes(), name
    assert report.seconds < 60


def test_sample_grid_shows_the_faces_with_predicted_and_true_landmarks(results_tree, tmp_path):
    """plotting.sample_grid (train's samples.png): the LR, SR and HR of each face in its row, predicted
    landmarks green on the SR, true ones red on the HR; the committed samples.png of a run is such a grid."""
    from jasrbench.data.split import load_split
    from jasrbench.plotting import sample_grid

    faces = load_split(results_tree.prepared / "300w" / "common.npz").subset(np.arange(2))
    sr = faces.hr.copy()
    sample_grid(faces.lr_at(8), sr, faces.hr, faces.landmarks, faces.landmarks + 3, tmp_path / "s.png", title="t")
    with_points = _png(tmp_path / "s.png")
    sample_grid(faces.lr_at(8), sr, faces.hr, None, None, tmp_path / "bare.png", title="t")
    bare = _png(tmp_path / "bare.png")
    assert with_points.shape == bare.shape
    assert abs(with_points.shape[0] / with_points.shape[1] - (2 * 1.25) / (3 * 1.2)) < 0.15  # 2 rows × 3 columns
    third = bare.shape[1] // 3
    for colour, col in ((figures.PRED_COLOUR, 1), (figures.TRUE_COLOUR, 2)):
        panel, empty = with_points[:, col * third:(col + 1) * third], bare[:, col * third:(col + 1) * third]
        # The points, only with points (a face's own lips may hold a few pixels of the red).
        assert _count(panel, colour) > max(40, 10 * _count(empty, colour)), colour
    assert _count(with_points[:, :third], figures.PRED_COLOUR) < 5  # none on the LR column
    for run in ("jasrnet-300w", "jasrnet_bl_sr-300w", "jasrnet_bl_align-300w"):
        image = _png(results_tree.results / "train" / run / "samples.png")
        assert image.shape[0] > image.shape[1]  # four faces, three columns
        assert _count(image, figures.TRUE_COLOUR) > 40, run  # the validation faces' true landmarks


@pytest.mark.parametrize("n_panels", [1, 3])
def test_ced_figure_size_for_any_panel_count(tmp_path, n_panels):
    x = np.linspace(0, 10, 101)
    curves = [figures.Curve("A", "a", x, np.clip(x / 8, 0, 1), 0.42), figures.Curve("B", "b", x, x / 10, None, True)]
    paths = figures.ced_figure([(f"split {i}", curves) for i in range(n_panels)], tmp_path / "ced",
                               figures.colours(["a", "b"]))
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert Image.open(paths[0]).size == figures.pixel_size(figures.ced_figsize(n_panels))


def test_a_long_legend_label_keeps_its_auc_inside_the_figure(tmp_path):
    """The floor's long label ("Mean shape (no learning)  0.012") once ran off the right edge, AUC and all:
    the single-panel figure widens until the legend fits, leaving a white strip at its right edge."""
    x = np.linspace(0, 10, 101)
    curves = [figures.Curve("JASRNet", "a", x, np.clip(x / 8, 0, 1), 0.42),
              figures.Curve("Mean shape (no learning), a longer label", "b", x, x / 10, 0.012)]
    png = figures.ced_figure([("300W common", curves)], tmp_path / "ced", figures.colours(["a", "b"]))[0]
    image = _png(png)
    ink = np.where((image[..., :3] < 200).any(axis=(0, 2)))[0]
    assert image.shape[1] > figures.pixel_size(figures.ced_figsize(1))[0]
    assert ink.max() < image.shape[1] - 5, "the legend touches the right edge: its text is cut"
