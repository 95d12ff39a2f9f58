"""The robustness track's named, seeded degradations (issue 26) on the real 300W faces.

- blur: :func:`degradations.blur_hr` (torchvision, float64, one pass per axis) against OpenCV's
  ``GaussianBlur`` and scipy's ``gaussian_filter`` (same σ, same ⌈4σ⌉ radius, reflected border) on the
  float HR: within 1e-12 (float64 rounding); the blurred LR made with OpenCV's blur instead is the
  same bytes;
- JPEG: PIL (the implementation) against torchvision's ``encode_jpeg``/``decode_jpeg`` (libjpeg-turbo
  built into torchvision): the decoders agree exactly on the same file; the two encoders' round trips
  agree within a measured bound; and the same codec settings as ``degrade.jpeg`` (calibration's);
- noise: on a flat grey image, mean ≈ 0 and std ≈ √(σ² + 1/12) levels (σ plus the 8-bit rounding,
  Sheppard's correction), Gaussian shape; on the real faces, the LR minus the clean LR has σ as well;
- seeded determinism: same bytes from 1 and 2 torch threads, any chunking and face order, and from two
  separate processes; the mixed draw's parameters in range, each factor applied ≈ 70% of the time,
  independently; the LR from an identity-augmented training batch equals the prepared ``mixed`` LR;
- bad values (σ < 0, q ∉ [1, 100], unknown names) are ConfigErrors naming the value.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from jasrbench.data import degradations as D
from jasrbench.data import degrade, protocols
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError

BLUR_TOLERANCE = 1e-12  # float64 blur vs OpenCV / scipy on [0, 1] images (observed ≈ 1e-15)


@pytest.fixture(scope="module")
def common(prepared_300w):
    """300W common (554 real faces), prepared by the paper protocol."""
    split = load_split(prepared_300w.out / "common.npz")
    assert split.protocol == "paper"
    return split


@pytest.fixture(scope="module")
def all_names(prepared_300w):
    """Every face name of the prepared shared 300W subset (common + train)."""
    names = set()
    for f in ("common.npz", "train.npz"):
        names |= set(load_split(prepared_300w.out / f).names.tolist())
    return sorted(names)


# ---------------------------------------------------------------- the registry and its values

def test_named_protocols_and_their_values():
    names = ["blur1", "blur2", "blur3", "blur4", "noise2", "noise5", "noise10", "noise20",
             "jpeg90", "jpeg70", "jpeg50", "jpeg30", "mixed"]
    assert list(D.REGISTRY) == names
    assert set(names) <= set(protocols.PROTOCOLS) and {"paper", "clean"} <= set(protocols.PROTOCOLS)
    for n in names:
        p = protocols.get(n)
        assert isinstance(p, D.Degraded) and p.name == n
        assert p.margin == protocols.PAPER_MARGIN and not p.antialias and p.jpeg_quality is None
    assert [protocols.get(f"blur{s}").blur for s in (1, 2, 3, 4)] == [(s, s) for s in (1.0, 2.0, 3.0, 4.0)]
    assert [protocols.get(f"noise{s}").noise for s in (2, 5, 10, 20)] == [(s, s) for s in (2.0, 5.0, 10.0, 20.0)]
    assert [protocols.get(f"jpeg{q}").jpeg for q in (90, 70, 50, 30)] == [(q, q) for q in (90, 70, 50, 30)]
    m = protocols.get("mixed")
    assert (m.blur, m.noise, m.jpeg, m.probability) == ((0.0, 4.0), (0.0, 15.0), (40, 95), 0.7)
    assert not protocols.get("blur2").random and not protocols.get("jpeg50").random
    assert protocols.get("noise5").random and m.random
    # The noise sweep shares one stream: a face gets the same normal field at every level.
    assert {protocols.get(f"noise{s}").stream for s in (2, 5, 10, 20)} == {"noise"}
    assert "U[0, 4] HR px" in m.describe() and "probability 0.7" in m.describe()


def test_prepare_and_evaluate_offer_the_new_names():
    import argparse

    from jasrbench.data.prepare import configure_parser

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["300w", "--raw", "r", "--out", "o", "--protocol", "mixed"])
    assert args.protocol == "mixed"
    with pytest.raises(SystemExit):
        parser.parse_args(["300w", "--raw", "r", "--out", "o", "--protocol", "jpeg101"])


def test_paper_and_clean_through_the_new_entry_points_are_make_lr(common):
    hr = common.hr[:64]
    assert np.array_equal(D.lr_uint8(hr, "paper", common.names[:64]), common.lr[:64])  # prepared bytes unchanged
    x = degrade.to_tensor(hr)
    for name in ("paper", "clean"):
        assert torch.equal(D.degrade_lr(x, name), degrade.make_lr(x, protocol=name))
        assert torch.equal(D.degrade_lr(x, name, scale=2), degrade.make_lr(x, 2, protocol=name))


# ---------------------------------------------------------------- blur

@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0, 4.0, 0.37, 2.718])
def test_blur_agrees_with_opencv_and_scipy(common, sigma):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is a test dependency (the dev extra)")
    from scipy.ndimage import gaussian_filter

    hr = common.hr[:12].astype(np.float64) / 255  # N×H×W×3
    ours = D.blur_hr(torch.from_numpy(hr).permute(0, 3, 1, 2), sigma).permute(0, 2, 3, 1).numpy()
    radius = math.ceil(D.BLUR_TRUNCATE * sigma)
    k = 2 * radius + 1
    ref_cv = np.stack([cv2.GaussianBlur(h, (k, k), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101) for h in hr])
    ref_sp = np.stack([gaussian_filter(h, (sigma, sigma, 0), mode="mirror", truncate=radius / sigma) for h in hr])
    d_cv, d_sp = np.abs(ours - ref_cv).max(), np.abs(ours - ref_sp).max()
    print(f"\nblur σ {sigma}: |ours − OpenCV| ≤ {d_cv:.2e}, |ours − scipy| ≤ {d_sp:.2e}")
    assert d_cv < BLUR_TOLERANCE and d_sp < BLUR_TOLERANCE
    assert np.abs(ours - hr).max() > 0.02  # not a vacuous agreement: the blur changes the faces


def test_blur_protocol_lr_is_the_cubic_of_the_reference_blur(common):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is a test dependency (the dev extra)")
    hr, names = common.hr[:100], common.names[:100]
    hr32 = degrade.to_tensor(hr).permute(0, 2, 3, 1).double().numpy()  # the float32 HR the pipeline blurs
    for level in (1, 4):
        sigma, k = float(level), 2 * math.ceil(D.BLUR_TRUNCATE * level) + 1
        ref = np.stack([cv2.GaussianBlur(h, (k, k), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
                        for h in hr32])
        ref_lr = degrade.to_uint8(degrade.quantize(degrade.resize(
            torch.from_numpy(ref).permute(0, 3, 1, 2).float(), (16, 16), antialias=False)))
        ours = D.lr_uint8(hr, f"blur{level}", names)
        assert np.array_equal(ours, ref_lr)
        assert np.abs(ours.astype(int) - common.lr[:100]).mean() > 1  # it does blur


# ---------------------------------------------------------------- JPEG

@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision.io's codecs, deprecated for TorchCodec
def test_jpeg_pil_agrees_with_torchvision(common):
    import io

    from PIL import Image
    from torchvision.io import decode_jpeg, encode_jpeg

    lr = common.lr  # the real 8-bit LRs, 554 faces
    worst = {}
    for q in (*D.JPEG_LEVELS, *D.MIXED_JPEG):
        ours = np.stack([D.jpeg_uint8(x, q) for x in lr])
        # Same file, two decoders: PIL's bytes decoded by torchvision are PIL's pixels.
        for x, y in zip(lr[:50], ours[:50], strict=True):
            buf = io.BytesIO()
            Image.fromarray(x).save(buf, format="JPEG", quality=q, subsampling="4:2:0")
            tv = decode_jpeg(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)).permute(1, 2, 0).numpy()
            assert np.array_equal(tv, y)
        # Two encoders: torchvision's round trip against PIL's.
        tv = np.stack([decode_jpeg(encode_jpeg(torch.from_numpy(x).permute(2, 0, 1).contiguous(), quality=q))
                       .permute(1, 2, 0).numpy() for x in lr])
        diff = np.abs(tv.astype(int) - ours.astype(int))
        worst[q] = (int(diff.max()), float(np.mean(diff == 0)))
        assert np.mean(diff == 0) > 0.99 and diff.max() <= 2  # measured: identical (both libjpeg-turbo, islow DCT)
        assert np.abs(ours.astype(int) - lr).mean() > 0.5  # JPEG changes the LR
    print("\nPIL vs torchvision JPEG round trip (max |Δ|, share equal):", worst)
    # The calibration's JPEG (degrade.jpeg, PIL defaults) has the same codec settings.
    q70 = degrade.to_uint8(degrade.jpeg(degrade.to_tensor(lr[:64]), 70))
    assert np.array_equal(q70, np.stack([D.jpeg_uint8(x, 70) for x in lr[:64]]))


def test_jpeg_protocol_lr_is_the_jpeg_of_the_paper_lr(common):
    ours = D.lr_uint8(common.hr, "jpeg30")  # deterministic: no names needed
    assert np.array_equal(ours, np.stack([D.jpeg_uint8(x, 30) for x in common.lr]))
    assert np.array_equal(ours, D.lr_uint8(common.hr, "jpeg30", common.names))


# ---------------------------------------------------------------- noise

@pytest.mark.parametrize("level", D.NOISE_LEVELS)
def test_noise_statistics_on_a_flat_image(all_names, level):
    names = all_names[:1000]
    flat = torch.full((len(names), 3, 128, 128), 128 / 255, dtype=torch.float32)  # an exact 8-bit level
    lr = D.degrade_lr(flat, f"noise{level}", names)
    e = (degrade.to_uint8(lr).astype(np.float64) - 128).ravel()  # 768 values per face
    assert np.abs(e).max() < 128  # no clipping at these levels
    expected = math.sqrt(level**2 + 1 / 12)  # σ and the 8-bit rounding (uniform, variance 1/12)
    se = expected / math.sqrt(e.size)
    z = (e - e.mean()) / e.std()
    print(f"\nnoise{level}: mean {e.mean():+.4f}, std {e.std():.4f} (expected {expected:.4f}), "
          f"kurtosis {np.mean(z**4):.3f}, skewness {np.mean(z**3):+.4f}")
    assert abs(e.mean()) < 5 * se
    assert e.std() == pytest.approx(expected, rel=0.01)
    assert np.mean(z**4) == pytest.approx(3.0, abs=0.1)  # Gaussian (a uniform's is 1.8)
    assert abs(np.mean(z**3)) < 0.05
    # Faces differ (each its own field), channels too.
    per_face = e.reshape(len(names), 3, 16, 16)
    assert abs(np.corrcoef(per_face[0].ravel(), per_face[1].ravel())[0, 1]) < 0.15
    assert abs(np.corrcoef(per_face[:, 0].ravel(), per_face[:, 1].ravel())[0, 1]) < 0.02


def test_noise_sweep_shares_one_field_per_face(common):
    flat = torch.full((50, 3, 128, 128), 128 / 255)
    names = common.names[:50]
    e5 = degrade.to_uint8(D.degrade_lr(flat, "noise5", names)).astype(int) - 128
    e10 = degrade.to_uint8(D.degrade_lr(flat, "noise10", names)).astype(int) - 128
    assert np.abs(e10 - 2 * e5).max() <= 1.5  # 10 z = 2·(5 z), up to the two roundings


def test_noise_on_real_faces(common):
    level = 10
    ours = D.lr_uint8(common.hr, f"noise{level}", common.names).astype(np.float64)
    clean = common.lr.astype(np.float64)
    keep = (clean > 4 * level) & (clean < 255 - 4 * level)  # where clipping is negligible
    e = (ours - clean)[keep]
    expected = math.sqrt(level**2 + 2 / 12)  # two roundings
    print(f"\nnoise{level} on {len(common)} real faces: mean {e.mean():+.4f}, std {e.std():.4f} ({keep.mean():.1%} kept)")
    assert abs(e.mean()) < 5 * expected / math.sqrt(e.size)
    assert e.std() == pytest.approx(expected, rel=0.02)


# ---------------------------------------------------------------- seeded determinism

def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


PROBE = ("mixed", "blur3", "noise10")


def test_same_bytes_from_one_and_two_threads_any_chunking_and_order(common):
    hr, names = common.hr[:48], common.names[:48]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = {p: D.lr_uint8(hr, p, names) for p in PROBE}
        torch.set_num_threads(2)
        two = {p: D.lr_uint8(hr, p, names, chunk=7) for p in PROBE}
    finally:
        torch.set_num_threads(before)
    for p in PROBE:
        assert np.array_equal(one[p], two[p]), p
    perm = np.random.default_rng(0).permutation(len(hr))
    assert np.array_equal(D.lr_uint8(hr[perm], "mixed", names[perm]), one["mixed"][perm])  # per face, not per batch
    single = np.concatenate([D.lr_uint8(hr[i : i + 1], "mixed", names[i : i + 1]) for i in range(10)])
    assert np.array_equal(single, one["mixed"][:10])
    # The float entry point gives the same bytes, on the HR's device.
    x = degrade.to_tensor(hr)
    assert np.array_equal(degrade.to_uint8(D.degrade_lr(x, "mixed", names)), one["mixed"])


CHILD = """
import hashlib, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from jasrbench.data import degradations as D
d = np.load(sys.argv[1])
for p in sys.argv[3:]:
    lr = D.lr_uint8(d["hr"], p, d["names"].tolist())
    print(p, hashlib.sha256(np.ascontiguousarray(lr).tobytes()).hexdigest())
"""


def test_same_bytes_from_two_processes(common, tmp_path):
    hr, names = common.hr[:32], common.names[:32]
    np.savez(tmp_path / "faces.npz", hr=hr, names=names)
    expected = {p: _digest(D.lr_uint8(hr, p, names)) for p in PROBE}
    for threads in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "faces.npz"), str(threads), *PROBE],
                             capture_output=True, text=True, env=env, check=True, timeout=300).stdout
        got = dict(line.split() for line in out.strip().splitlines())
        assert got == expected, threads


def test_draws_depend_on_the_name_the_stream_and_the_salt(common):
    names = common.names[:200].tolist()
    assert D.draws("mixed", names) == D.draws("mixed", names)
    assert D.draws("mixed", names) != D.draws("mixed", names[1:] + names[:1])
    assert D.draws("mixed", names) != D.draws("mixed", names, salt="epoch 1")
    a, b = D.draw("mixed", names[0])[1], D.face_rng("mixed", names[0])
    b.random(6)  # the draw consumes six uniforms before the noise field
    assert np.array_equal(a.standard_normal(5), b.standard_normal(5))
    x = degrade.to_tensor(common.hr[:200])
    salted = D.degrade_lr(x, "mixed", names, salt="epoch 1")
    assert not torch.equal(salted, D.degrade_lr(x, "mixed", names))


def test_mixed_draw_in_range_with_frequency_0_7(all_names):
    n = len(all_names)
    d = D.draws("mixed", all_names)
    blur = np.array([x.blur for x in d])
    noise = np.array([x.noise for x in d])
    jpeg = np.array([-1 if x.jpeg is None else x.jpeg for x in d])
    on = np.stack([blur > 0, noise > 0, jpeg > 0])
    freq = on.mean(axis=1)
    se = math.sqrt(0.7 * 0.3 / n)
    print(f"\nmixed over {n} faces: applied {freq.round(4).tolist()}, all three {np.all(on, 0).mean():.4f} "
          f"(0.343), none {np.mean(~on.any(0)):.4f} (0.027); q {jpeg[on[2]].min()}…{jpeg[on[2]].max()}")
    assert np.all(np.abs(freq - 0.7) < 4 * se)
    assert abs(np.all(on, 0).mean() - 0.7**3) < 4 * math.sqrt(0.343 * 0.657 / n)
    assert np.all((blur[on[0]] > 0) & (blur[on[0]] <= 4))
    assert np.all((noise[on[1]] > 0) & (noise[on[1]] <= 15))
    q = jpeg[on[2]]
    assert np.all((q >= 40) & (q <= 95)) and set(q.tolist()) == set(range(40, 96))  # integers, both ends
    from scipy.stats import chisquare, kstest

    assert kstest(blur[on[0]] / 4, "uniform").pvalue > 1e-3
    assert kstest(noise[on[1]] / 15, "uniform").pvalue > 1e-3
    assert chisquare(np.bincount(q - 40, minlength=56)).pvalue > 1e-3


def test_mixed_lr_is_the_composition_of_its_draw(common):
    hr, names = common.hr, common.names
    lr = D.lr_uint8(hr, "mixed", names)
    d = D.draws("mixed", names)
    none = [i for i, x in enumerate(d) if x == D.Draw()]
    only_jpeg = [i for i, x in enumerate(d) if x.blur == 0 and x.noise == 0 and x.jpeg is not None]
    only_blur = [i for i, x in enumerate(d) if x.blur > 0 and x.noise == 0 and x.jpeg is None]
    assert none and only_jpeg and only_blur
    assert np.array_equal(lr[none], common.lr[none])  # nothing drawn: the paper LR
    assert all(np.array_equal(lr[i], D.jpeg_uint8(common.lr[i], d[i].jpeg)) for i in only_jpeg)
    for i in only_blur[:5]:
        blurred = D.blur_hr(degrade.to_tensor(hr[i : i + 1]), d[i].blur).float()
        assert np.array_equal(lr[i], degrade.to_uint8(degrade.make_lr(blurred))[0])


# ---------------------------------------------------------------- prepare and training

@pytest.fixture(scope="module")
def prepared_mixed(w300_root, tmp_path_factory):
    """``prepare 300w --protocol mixed``: the common test set (554 faces) and 60 training faces (context crops)."""
    from jasrbench.data.prepare import prepare

    root = tmp_path_factory.mktemp("mixed-raw") / "300W"
    for subset, n in (("lfpw/testset", None), ("helen/testset", None), ("lfpw/trainset", 60)):
        (root / subset).mkdir(parents=True)
        pts = sorted((w300_root / subset).glob("*.pts"))[:n]
        for p in pts:
            for f in (p, p.with_suffix(".png"), p.with_suffix(".jpg")):
                if f.is_file():
                    (root / subset / f.name).symlink_to(f.resolve())
    out = tmp_path_factory.mktemp("mixed") / "300w"
    summary = prepare("300w", root, out, protocol="mixed")
    assert summary["protocol"] == "mixed" and summary["degradations"]["probability"] == 0.7
    return out


def test_prepare_writes_the_mixed_lr(prepared_mixed, prepared_300w):
    split = load_split(prepared_mixed / "common.npz")
    assert split.protocol == "mixed" and split.metadata["degradations"]["jpeg_quality"] == [40, 95]
    assert np.array_equal(split.lr, D.lr_uint8(split.hr, "mixed", split.names))
    paper = load_split(prepared_300w.out / "common.npz")
    index = {n: i for i, n in enumerate(paper.names)}
    same = [index[n] for n in split.names]
    assert np.array_equal(split.hr, paper.hr[same])  # the paper protocol's crop and HR
    assert not np.array_equal(split.lr, paper.lr[same])


def test_training_lr_equals_the_prepared_lr(prepared_mixed):
    from jasrbench.data.augment import augment_batch
    from jasrbench.recipe import AugmentConfig
    from jasrbench.seeds import generator

    split = load_split(prepared_mixed / "train.npz")
    identity = AugmentConfig(scale=(1.0, 1.0), rotation=0.0, flip=0.0)
    context = torch.from_numpy(split.context).permute(0, 3, 1, 2)
    points = torch.from_numpy(split.landmarks + split.context_offset)
    hr, _, _ = augment_batch(context, points, torch.from_numpy(split.visible), identity, generator(0, 0, 0), None)
    assert np.array_equal(degrade.to_uint8(hr), split.hr)  # identity augmentation: the stored HR
    lr = D.degrade_lr(hr, "mixed", split.names.tolist())
    assert lr.dtype == hr.dtype and lr.device == hr.device
    assert np.array_equal(degrade.to_uint8(lr), split.lr)


# ---------------------------------------------------------------- bad values

@pytest.mark.parametrize("changes, message", [
    ({"blur": (-1.0, -1.0)}, "blur σ"), ({"blur": (3.0, 1.0)}, "blur σ"), ({"blur": (0.0, 40.0)}, "blur σ"),
    ({"noise": (-2.0, 5.0)}, "noise σ"), ({"noise": (float("nan"), 1.0)}, "noise σ"),
    ({"jpeg": (0, 0)}, "JPEG quality"), ({"jpeg": (101, 101)}, "JPEG quality"), ({"jpeg": (50.5, 60)}, "JPEG quality"),
    ({"jpeg": 75}, "jpeg must be a"), ({"probability": 1.5}, "probability"), ({"margin": 1.3}, "paper protocol"),
])
def test_bad_values_are_named_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message) as err:
        D.MIXED.with_(name="custom", **changes)
    assert "'custom'" in str(err.value)


def test_bad_names_are_config_errors(tmp_path, w300_root):
    import jasrbench.dag as jdag
    import jasrbench.params as jparams
    from jasrbench.data.prepare import prepare
    from jasrbench.paths import REPO_ROOT

    for name, why in (("jpeg101", "JPEG quality"), ("jpeg0", "JPEG quality"), ("blur-1", "blur σ"),
                      ("noise-2", "noise σ"), ("noise7", "not a named level"), ("fog3", "choose one of")):
        with pytest.raises(ConfigError, match=why):
            protocols.get(name)
    with pytest.raises(ConfigError, match="unknown degradation"):
        D.sweep("fog", 1)
    with pytest.raises(ConfigError, match="jpeg101"):
        prepare("300w", w300_root, tmp_path / "out", protocol="jpeg101")
    assert not (tmp_path / "out").exists()
    params = copy.deepcopy(jparams.load_profile("cpu", REPO_ROOT))
    params["data"]["protocol"] = "mixed"
    jdag.check(params, "pipelines/cpu.yaml")  # accepted
    params["data"]["protocol"] = "jpeg101"
    with pytest.raises(ConfigError, match="data.protocol.*jpeg101"):
        jdag.check(params, "pipelines/cpu.yaml")
    with pytest.raises(ValueError, match="names"):
        D.lr_uint8(np.zeros((2, 128, 128, 3), np.uint8), "mixed")
    with pytest.raises(ValueError, match="1 face names for 2 faces"):
        D.lr_uint8(np.zeros((2, 128, 128, 3), np.uint8), "noise5", ["a"])


def test_make_lr_refuses_a_per_face_protocol_instead_of_a_silent_plain_lr():
    # split.lr_at, enhance and calibrate call degrade.make_lr: given a camera protocol they would return the
    # plain cubic LR under that protocol's name; the error names the function that makes its LR.
    import torch

    from jasrbench.data import degrade

    hr = torch.rand(1, 3, 128, 128)
    for name in ("blur2", "noise5", "jpeg50", "mixed"):
        with pytest.raises(ValueError, match=f"protocol '{name}' degrades each face.*degrade_lr"):
            degrade.make_lr(hr, 8, protocol=name)
    assert degrade.make_lr(hr, 8, protocol="paper").shape == (1, 3, 16, 16)
