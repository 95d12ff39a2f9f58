"""``jasrbench calibrate`` on real 300W common faces: the grid's rows are the Bicubic row of ``prepare``'s splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from jasrbench.data import calibrate, degrade, protocols
from jasrbench.data.split import load_split
from jasrbench.metrics import image_quality


def test_grid_rows_equal_the_bicubic_row_of_a_prepared_split(w300_root, prepared_300w, tmp_path):
    table = calibrate.calibrate(w300_root, tmp_path, margins=[1.3, protocols.PAPER_MARGIN], jpeg=[None, 75],
                                max_faces=24)
    assert len(table) == 2 * 2 * 2 and set(table["faces"]) == {24}
    saved = pd.read_csv(tmp_path / calibrate.CSV_NAME)
    assert list(saved.columns) == ["margin", "protocol", "jpeg_quality", "faces", "psnr", "ssim", "d_psnr", "d_ssim",
                                   "within_tolerance"]
    assert (tmp_path / calibrate.PLOT_NAME).stat().st_size > 10_000
    # The paper-protocol row at the paper margin is what evaluate computes on prepare's split, same faces.
    _, records, _ = calibrate.common_faces(w300_root, max_faces=24)
    split = load_split(prepared_300w.out / "common.npz")
    idx = [int(np.flatnonzero(split.names == r.name)[0]) for r in records]
    sr = degrade.quantize(degrade.upsample(degrade.to_tensor(split.lr[idx]), protocol="paper"))
    direct = image_quality.psnr_ssim(sr, degrade.to_tensor(split.hr[idx]), torch.from_numpy(split.boxes[idx]))
    row = table[(table["margin"] == protocols.PAPER_MARGIN) & (table["protocol"] == "paper")
                & (table["jpeg_quality"] == 0)].iloc[0]
    assert row["psnr"] == pytest.approx(float(direct["psnr"].double().mean()), abs=1e-3)
    assert row["ssim"] == pytest.approx(float(direct["ssim"].double().mean()), abs=1e-4)
    # What the grid shows: the wider crop and the aliasing kernel both lower the row; JPEG lowers it further.
    get = lambda m, p, q: table[(table["margin"] == m) & (table["protocol"] == p) & (table["jpeg_quality"] == q)]["psnr"].item()  # noqa: E731
    assert get(1.3, "clean", 0) > get(1.3, "paper", 0) > get(protocols.PAPER_MARGIN, "paper", 0)
    assert get(protocols.PAPER_MARGIN, "paper", 75) < get(protocols.PAPER_MARGIN, "paper", 0)


def test_bad_margins_are_a_named_error(w300_root, tmp_path):
    from jasrbench.errors import DataError

    with pytest.raises(DataError, match="margins must be positive"):
        calibrate.calibrate(w300_root, tmp_path, margins=[0.0])
