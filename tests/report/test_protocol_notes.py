"""The notes under the paper's tables say how our protocol differs from the authors' (issue 11).

On the real tiny results tree (tests/report/conftest.py): every paper table names the degradation
protocol its results were made under, the model-selection and heatmap-coordinate differences, and
Table 3 shows the authors' LFW convention (whole image minus an 8-pixel border) beside the face box.
"""

from __future__ import annotations

import pandas as pd

from jasrbench.data import protocols
from jasrbench.report import paper


def test_every_paper_table_says_what_differs_from_the_authors(results_tree):
    for spec in paper.TABLES:
        md = (results_tree.tables / f"{spec.name}.md").read_text()
        assert paper.SELECTION_NOTE in md and paper.HEATMAP_NOTE in md, spec.name
        assert f"protocol paper, as the authors made their data: crop {protocols.PAPER_MARGIN} ×" in md, spec.name
        tex = (results_tree.tables / f"{spec.name}.tex").read_text()
        assert "best PSNR on the test set" in tex and "1-based" in tex, spec.name


def test_table3_puts_the_papers_lfw_values_in_the_border_columns(results_tree):
    csv = pd.read_csv(results_tree.tables / "table3.csv")
    bicubic = csv[csv["row"] == "Bicubic"].set_index("key")
    assert bicubic.loc["psnr_b8", "paper"] == 25.28 and bicubic.loc["ssim_b8", "paper"] == 0.736
    assert pd.isna(bicubic.loc["psnr", "paper"]) and pd.isna(bicubic.loc["ssim", "paper"])
    # Ours in both conventions, from the evaluation's psnr/ssim and psnr_border8/ssim_border8.
    assert bicubic.loc["psnr_b8", "metric"] == "psnr_border8" and bicubic.loc["psnr", "metric"] == "psnr"
    assert pd.notna(bicubic.loc["psnr_b8", "ours"]) and pd.notna(bicubic.loc["psnr", "ours"])
    assert bicubic.loc["psnr_b8", "ours"] != bicubic.loc["psnr", "ours"]
    assert paper.LFW_REGION_NOTE in (results_tree.tables / "table3.md").read_text()
