"""The degradation protocols end to end on the real 300W common test set (issue 11 "Must show").

``prepare 300w --protocol paper`` then ``evaluate bicubic --split 300w/common --profile cpu``: the
Bicubic row lands on the paper's 21.36 dB / 0.594 (within 0.25 dB / 0.01) over all 554 faces;
``--protocol clean`` keeps the modern convention's 23.82 / 0.644. Only the two common-test subsets
are prepared (symlinked), so the test reads 554 faces, not the whole shared set.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import jasrbench.dag as jdag

import jasrbench.params as jparams
from jasrbench.data import protocols
from jasrbench.data.prepare import prepare
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError
from jasrbench.evaluate import evaluate
from jasrbench.paths import REPO_ROOT

COMMON = ("lfpw/testset", "helen/testset")


@pytest.fixture(scope="module")
def common_root(w300_root, tmp_path_factory):
    """A 300W root holding only the common test set (LFPW test + HELEN test), symlinked."""
    root = tmp_path_factory.mktemp("common") / "300W"
    for subset in COMMON:
        (root / subset).mkdir(parents=True)
        for f in sorted((w300_root / subset).iterdir()):
            (root / subset / f.name).symlink_to(f.resolve())
    return root


@pytest.fixture(scope="module")
def prepared(common_root, tmp_path_factory):
    """{protocol: prepared root} for both protocols."""
    out = {}
    for name in ("paper", "clean"):
        root = tmp_path_factory.mktemp(f"prepared-{name}")
        summary = prepare("300w", common_root, root / "300w", protocol=name)
        assert summary["faces"] == {"common": 554} and summary["protocol"] == name
        out[name] = root
    return out


def cpu_params() -> dict:
    return copy.deepcopy(jparams.load_profile("cpu", REPO_ROOT))


def test_every_profile_uses_the_paper_protocol():
    for name in ("paper", "cpu", "smoke"):
        assert jparams.load_profile(name, REPO_ROOT)["data"]["protocol"] == "paper"


def test_split_records_its_protocol(prepared):
    paper = load_split(prepared["paper"] / "300w" / "common.npz")
    clean = load_split(prepared["clean"] / "300w" / "common.npz")
    assert paper.protocol == "paper" and clean.protocol == "clean"
    assert paper.metadata["margin"] == protocols.PAPER_MARGIN and clean.metadata["margin"] == protocols.CLEAN_MARGIN
    assert "non-antialiased" in paper.metadata["degradation"] and "antialiased" in clean.metadata["degradation"]
    assert paper.names.tolist() == clean.names.tolist()
    # A wider crop: the face box covers a smaller part of the 128² image.
    width = lambda s: float(np.mean(s.boxes[:, 2] - s.boxes[:, 0]))  # noqa: E731
    assert width(paper) == pytest.approx(width(clean) * 1.3 / protocols.PAPER_MARGIN, rel=0.02)


def test_bicubic_row_lands_on_the_papers_under_paper_and_keeps_the_clean_numbers(prepared, tmp_path):
    paper = evaluate("bicubic", "300w/common", tmp_path / "paper", cpu_params(), prepared=prepared["paper"])
    assert paper["faces"] == 554 and paper["protocol"] == "paper"
    psnr, ssim = paper["metrics"]["psnr"]["mean"], paper["metrics"]["ssim"]["mean"]
    print(f"\npaper protocol, Bicubic on 300W common: {psnr:.3f} dB / {ssim:.4f} (paper 21.36 / 0.594)")
    assert abs(psnr - 21.36) <= 0.25 and abs(ssim - 0.594) <= 0.01
    clean = evaluate("bicubic", "300w/common", tmp_path / "clean", cpu_params(), prepared=prepared["clean"],
                     protocol="clean")
    print(f"clean protocol: {clean['metrics']['psnr']['mean']:.3f} dB / {clean['metrics']['ssim']['mean']:.4f}")
    assert clean["faces"] == 554 and clean["protocol"] == "clean"
    assert clean["metrics"]["psnr"]["mean"] == pytest.approx(23.82, abs=0.02)
    assert clean["metrics"]["ssim"]["mean"] == pytest.approx(0.644, abs=0.002)
    # LFW's (Table 3) convention beside the face box: the whole image minus an 8-pixel border.
    assert {"psnr_border8", "ssim_border8"} <= set(paper["metrics"])


def test_evaluating_across_protocols_is_an_error_naming_both(prepared, tmp_path):
    with pytest.raises(ConfigError, match=r"clean.*paper|paper.*clean") as err:
        evaluate("bicubic", "300w/common", tmp_path, cpu_params(), prepared=prepared["clean"])
    assert "common.npz" in str(err.value) and "'clean'" in str(err.value) and "'paper'" in str(err.value)
    assert not (tmp_path / "summary.json").exists()


def test_training_across_protocols_is_an_error_naming_both(prepared_root, tmp_path):
    from jasrbench.train import train

    params = cpu_params()
    params["data"]["protocol"] = "clean"  # the shared prepared subset is paper (prepare's default)
    with pytest.raises(ConfigError) as err:
        train("edsr", "300w", params, tmp_path / "m", prepared=prepared_root)
    message = str(err.value)
    assert "train.npz" in message and "'paper'" in message and "'clean'" in message
    assert not (tmp_path / "m" / "model.pt").exists()


def test_unknown_protocol_in_a_profile_is_a_config_error():
    params = cpu_params()
    params["data"]["protocol"] = "matlab"
    with pytest.raises(ConfigError, match="data.protocol.*matlab"):
        jdag.check(params, "pipelines/cpu.yaml")
