"""Named, seeded degradations of the robustness track (issue 26): tiny faces as cameras deliver them.

Every protocol here keeps the ``paper`` protocol's crop (margin :data:`~.protocols.PAPER_MARGIN`), its
clean 128² HR (the target is never degraded) and its ×8 non-antialiased cubic, and adds, in camera order:

1. **blur**: a Gaussian blur of the HR *before* the ×8 downscaling (optics), σ in HR pixels
   (σ 1–4 HR px = 0.125–0.5 LR px); torchvision's ``gaussian_blur``, one pass per axis, in float64 on the
   CPU, kernel radius ⌈4σ⌉, reflected border (OpenCV's ``BORDER_REFLECT_101``); not quantized before
   the downscaling (the scene is not 8-bit);
2. **noise**: additive Gaussian noise on the *float* LR, before its 8-bit rounding (sensor noise
   precedes the ADC; Real-ESRGAN adds it to the float image too, then clips and rounds), independent per
   pixel and channel (colour noise), σ in 8-bit levels (σ/255 on [0, 1]); numpy, float64; then clipped to
   [0, 1] and rounded to 8 bits;
3. **JPEG**: of the 8-bit LR (storage), by PIL's libjpeg(-turbo), quality q, 4:2:0 chroma, baseline,
   not optimized: the same codec settings as :func:`jasrbench.data.degrade.jpeg`.

Named protocols (:data:`REGISTRY`, registered in :data:`jasrbench.data.protocols.PROTOCOLS`):

========== ===========================================================================
``blur1`` … ``blur4``       HR σ = 1, 2, 3, 4 px (only blur)
``noise2`` … ``noise20``    σ = 2, 5, 10, 20 /255 (only noise)
``jpeg90`` … ``jpeg30``     q = 90, 70, 50, 30 (only JPEG)
``mixed``                   per face: blur σ ~ U[0, 4] HR px, noise σ ~ U[0, 15]/255, JPEG q ~ U{40, …, 95}
                            (integer, both ends included), each applied independently with probability 0.7
========== ===========================================================================

Sources of the ranges, scaled to our 128-pixel face: GFPGAN's degradation (Wang et al., CVPR 2021,
``options/train_gfpgan_v1.yml``) blurs 512-px faces with σ ∈ [0.1, 10], adds noise σ ∈ [0, 20]/255 and
JPEGs with q ∈ [60, 100]; Real-ESRGAN (Wang et al., ICCVW 2021, ``options/train_realesrgan_x4plus.yml``)
uses blur σ ∈ [0.2, 3] (first stage) at 256-px crops, noise σ ∈ [1, 30]/255, JPEG q ∈ [30, 95]. At 128 px,
GFPGAN's σ 10 is 2.5 px and Real-ESRGAN's 3 px at 256 is 1.5 px, so U[0, 4] covers both with a margin
for CCTV optics; noise σ and JPEG q do not scale with the image size: ``mixed`` takes U[0, 15]/255 (inside
both) and q ∈ [40, 95] (between GFPGAN's 60 and Real-ESRGAN's 30); the sweeps extend one factor at a
time to where faces break (noise 20/255 = GFPGAN's maximum, q 30 = Real-ESRGAN's minimum, blur σ 4).

**Seeding.** A face's draw depends only on its name and the protocol's ``stream``
(``blur``/``noise``/``jpeg`` for the sweeps, ``mixed``): SHA-256 of ``"jasrbench.degradations\\n" + stream +
"\\n" + name`` (+ ``"\\n" + salt`` if one is given) seeds a numpy ``Generator(PCG64(...))``. It draws, in
this order, three uniforms (is blur/noise/JPEG applied: ``u < probability``), three uniforms (where in
its range each factor lies: blur ``lo + (hi − lo)·v``, noise likewise, JPEG ``lo + ⌊v·(hi − lo + 1)⌋``),
then, where noise is applied, the 3×h×w standard-normal field. The noise sweep shares its stream, so a
face gets the same normal field at σ 2, 5, 10 and 20 (common random numbers: a sweep curve's steps
come from σ alone). So a degraded split is the same bytes on every run, thread count and chunking
(tested) and on every machine with the pinned numpy, torch and Pillow: the float64 blur is rounded to
float32 before the cubic (the float32 path of ``paper``), which absorbs last-bit differences between
BLAS kernels.

:func:`degrade_lr` (torch batches: training's on-the-fly LR) and :func:`lr_uint8` (uint8 arrays:
``prepare``) are one code path; for ``paper`` and ``clean`` they are :func:`.degrade.make_lr` itself.
With ``salt=None`` the LR of a face made from its stored HR equals its prepared LR bit for bit.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from . import protocols
from .protocols import PAPER_MARGIN, Protocol

if TYPE_CHECKING:  # torch is imported where it is used: protocols (and params) stay torch-free
    import torch

BLUR_LEVELS = (1, 2, 3, 4)  # HR px
NOISE_LEVELS = (2, 5, 10, 20)  # 8-bit levels (σ/255)
JPEG_LEVELS = (90, 70, 50, 30)  # quality
MIXED_BLUR = (0.0, 4.0)  # HR px, uniform
MIXED_NOISE = (0.0, 15.0)  # 8-bit levels, uniform
MIXED_JPEG = (40, 95)  # quality, uniform integer, both ends included
MIXED_PROBABILITY = 0.7  # each factor, independently
BLUR_MAX = 16.0  # HR px: a larger kernel would not fit the 128² crop's reflected border
BLUR_TRUNCATE = 4.0  # kernel radius = ceil(4σ) (scipy's default truncation)
SEED_PREFIX = "jasrbench.degradations"


@dataclass(frozen=True)
class Degraded(Protocol):
    """A paper-protocol crop and ×8 cubic plus camera degradations of the LR (see the module doc).

    Each factor is ``None`` (off) or a range ``(lo, hi)`` drawn uniformly per face (``lo == hi``: a fixed
    level); each is applied with ``probability`` (independently). ``stream`` names the random stream
    the faces' draws come from (protocols sharing it share the draws).
    """

    per_face = True

    blur: tuple[float, float] | None = None  # Gaussian σ on the HR, HR pixels
    noise: tuple[float, float] | None = None  # Gaussian σ on the float LR, 8-bit levels (σ/255)
    jpeg: tuple[int, int] | None = None  # JPEG quality of the 8-bit LR
    probability: float = 1.0
    stream: str = ""

    def __post_init__(self) -> None:
        where = f"degradation protocol {self.name!r}"
        for field, unit, top in (("blur", "HR px", BLUR_MAX), ("noise", "/255", 255.0)):
            r = getattr(self, field)
            if r is None:
                continue
            lo, hi = _pair(r, where, field)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > top or lo > hi:
                raise ConfigError(f"{where}: {field} σ must satisfy 0 ≤ low ≤ high ≤ {top:g} {unit}, got {r!r}")
            object.__setattr__(self, field, (float(lo), float(hi)))
        if self.jpeg is not None:
            lo, hi = _pair(self.jpeg, where, "jpeg")
            if any(float(v) != int(v) for v in (lo, hi)) or not 1 <= lo <= hi <= 100:
                raise ConfigError(f"{where}: JPEG quality must be integers 1 ≤ low ≤ high ≤ 100, got {self.jpeg!r}")
            object.__setattr__(self, "jpeg", (int(lo), int(hi)))
        if not 0.0 <= float(self.probability) <= 1.0:
            raise ConfigError(f"{where}: probability must be in [0, 1], got {self.probability!r}")
        if self.margin != PAPER_MARGIN or self.antialias or self.jpeg_quality is not None:
            raise ConfigError(f"{where}: keeps the paper protocol's crop and kernel (margin {PAPER_MARGIN}, "
                              "non-antialiased cubic, no base JPEG)")
        if not self.stream:
            object.__setattr__(self, "stream", self.name)

    @property
    def random(self) -> bool:
        """True when faces differ in their draw (noise, a range or a probability < 1): names are needed."""
        ranged = any(r is not None and r[0] != r[1] for r in (self.blur, self.noise, self.jpeg))
        return self.noise is not None or ranged or self.probability < 1

    def parameters(self) -> dict[str, Any]:
        """The protocol's values, as recorded in a prepared split's metadata."""
        return {"base": "paper", "blur_sigma_hr_px": _jsonable(self.blur), "noise_sigma_255": _jsonable(self.noise),
                "jpeg_quality": _jsonable(self.jpeg), "probability": self.probability, "stream": self.stream,
                "order": "HR blur -> x8 cubic -> float LR noise -> 8-bit -> LR JPEG"}

    def describe(self) -> str:
        parts = []
        for field, what, ranged in (("blur", "Gaussian blur σ {} HR px before ×8", "U[{:g}, {:g}]"),
                                    ("noise", "Gaussian noise σ {}/255 on the float LR", "U[{:g}, {:g}]"),
                                    ("jpeg", "LR JPEG quality {}", "U{{{}…{}}}")):
            r = getattr(self, field)
            if r is not None:
                parts.append(what.format(f"{r[0]:g}" if r[0] == r[1] else ranged.format(*r)))
        chance = f", each with probability {self.probability:g}" if self.probability < 1 else ""
        seeded = f"; drawn per face from its name (stream {self.stream!r})" if self.random else ""
        return (f"{self.name}: the paper protocol (crop margin {self.margin:g}, LR by {self.kernel}, 8-bit LR) + "
                f"{'; '.join(parts) or 'nothing'}{chance}{seeded}")


def _pair(r: Any, where: str, field: str) -> tuple[float, float]:
    try:
        lo, hi = r
        return float(lo), float(hi)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {field} must be a (low, high) pair, got {r!r}") from None


def _jsonable(r: tuple | None) -> Any:
    return None if r is None else (r[0] if r[0] == r[1] else list(r))


def sweep(kind: str, level: float) -> Degraded:
    """The one-factor protocol ``blur<σ>``, ``noise<σ·255>`` or ``jpeg<q>`` (values checked: ConfigError)."""
    name = f"{kind}{level:g}"
    if kind == "blur":
        return Degraded(name, PAPER_MARGIN, antialias=False, blur=(level, level), stream="blur")
    if kind == "noise":
        return Degraded(name, PAPER_MARGIN, antialias=False, noise=(level, level), stream="noise")
    if kind == "jpeg":
        return Degraded(name, PAPER_MARGIN, antialias=False, jpeg=(level, level), stream="jpeg")
    raise ConfigError(f"unknown degradation {kind!r}: choose blur, noise or jpeg")


MIXED = Degraded("mixed", PAPER_MARGIN, antialias=False, blur=MIXED_BLUR, noise=MIXED_NOISE, jpeg=MIXED_JPEG,
                 probability=MIXED_PROBABILITY)
SWEEPS: dict[str, tuple[Degraded, ...]] = {
    kind: tuple(sweep(kind, level) for level in levels)
    for kind, levels in (("blur", BLUR_LEVELS), ("noise", NOISE_LEVELS), ("jpeg", JPEG_LEVELS))
}
REGISTRY: dict[str, Degraded] = {p.name: p for p in (*(p for s in SWEEPS.values() for p in s), MIXED)}


def unknown_hint(name: str) -> str:
    """Why ``name`` is not a protocol, where it looks like a sweep level (for :func:`protocols.get`'s error)."""
    m = re.fullmatch(r"(blur|noise|jpeg)(-?[0-9.]+)", name)
    if not m:
        return ""
    kind, value = m.group(1), m.group(2)
    try:
        sweep(kind, float(value))
    except (ConfigError, ValueError) as exc:
        return f" ({exc})"
    levels = ", ".join(p.name for p in SWEEPS[kind])
    return f" (not a named level of the {kind} sweep: {levels})"


# ---------------------------------------------------------------- the per-face draw

@dataclass(frozen=True)
class Draw:
    """One face's degradation: blur σ (HR px), noise σ (8-bit levels), JPEG quality; 0/None = not applied."""

    blur: float = 0.0
    noise: float = 0.0
    jpeg: int | None = None


def face_rng(stream: str, name: str, salt: str | None = None) -> np.random.Generator:
    """The face's generator: SHA-256 of the stream, the face name (and the salt) → PCG64."""
    key = f"{SEED_PREFIX}\n{stream}\n{name}" + ("" if salt is None else f"\n{salt}")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


def draw(protocol: str | Degraded, name: str, salt: str | None = None) -> tuple[Draw, np.random.Generator]:
    """Face ``name``'s draw under ``protocol`` and its generator, positioned where the noise field starts."""
    p = protocols.get(protocol)
    if not isinstance(p, Degraded):
        raise ConfigError(f"protocol {p.name!r} draws no degradation")
    rng = face_rng(p.stream, str(name), salt)
    applied = rng.random(3) < p.probability
    where = rng.random(3)
    blur = noise = 0.0
    jpeg = None
    if p.blur is not None and applied[0]:
        blur = p.blur[0] + (p.blur[1] - p.blur[0]) * float(where[0])
    if p.noise is not None and applied[1]:
        noise = p.noise[0] + (p.noise[1] - p.noise[0]) * float(where[1])
    if p.jpeg is not None and applied[2]:
        jpeg = min(p.jpeg[1], p.jpeg[0] + int(math.floor(float(where[2]) * (p.jpeg[1] - p.jpeg[0] + 1))))
    return Draw(blur, noise, jpeg), rng


def draws(protocol: str | Degraded, names, salt: str | None = None) -> list[Draw]:
    """Every face's draw (e.g. to tabulate a ``mixed`` split's degradations)."""
    return [draw(protocol, n, salt)[0] for n in names]


# ---------------------------------------------------------------- the three operations

def blur_hr(hr: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a 3×H×W (or B×3×H×W) image, σ in pixels, by torchvision's ``gaussian_blur``: one
    pass per axis (a k×1 then a 1×k kernel: torchvision's 1-D kernel, exact), float64 on the CPU, radius
    ⌈4σ⌉, reflected border. Returns float64."""
    import torch
    from torchvision.transforms.v2.functional import gaussian_blur

    x = hr.detach().to("cpu", torch.float64)
    if sigma <= 0:
        return x
    k = 2 * math.ceil(BLUR_TRUNCATE * sigma) + 1
    faces = x.reshape(-1, *x.shape[-3:])
    out = torch.empty_like(faces)
    for i in range(len(faces)):  # one face per call: torch's float64 conv is fastest that way (≈ 7 ms at σ 4)
        out[i] = gaussian_blur(gaussian_blur(faces[i], [k, 1], [sigma, sigma]), [1, k], [sigma, sigma])
    return out.reshape(x.shape)


def add_noise(lr: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Float LR (3×h×w in [0, 1]) + N(0, (σ/255)²) per value, from ``rng``; clipped and rounded → h×w×3 uint8."""
    z = rng.standard_normal(lr.shape)
    noisy = lr.astype(np.float64) + (sigma / 255.0) * z
    return np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)


def jpeg_uint8(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of an h×w×3 uint8 image through PIL (quality ``quality``, 4:2:0, baseline)."""
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"JPEG quality must be in [1, 100], got {quality}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


# ---------------------------------------------------------------- the LR

def _faces(p: Degraded, n: int, names, salt: str | None) -> list[tuple[Draw, np.random.Generator | None]]:
    if names is None:
        if p.random:
            raise ValueError(f"protocol {p.name!r} draws per face: pass the faces' names")
        fixed = Draw(p.blur[0] if p.blur else 0.0, 0.0, p.jpeg[0] if p.jpeg else None)
        return [(fixed, None)] * n
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"{len(names)} face names for {n} faces")
    return [draw(p, name, salt) for name in names]


def _degraded_uint8(hr: torch.Tensor, p: Degraded, names, scale: int, salt: str | None) -> np.ndarray:
    """B×3×H×W float HR (any device) → B×h×w×3 uint8 LR, all on the CPU (see the module doc)."""
    import torch

    from . import degrade

    if hr.dim() != 4:
        raise ValueError(f"expected a B×C×H×W batch, got shape {tuple(hr.shape)}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}×{w} is not divisible by the scale {scale}")
    faces = _faces(p, len(hr), names, salt)
    x = hr.detach().to("cpu", torch.float32)  # what make_lr's resize computes in
    blurred = [i for i, (d, _) in enumerate(faces) if d.blur > 0]
    if blurred:
        x = x.clone()
        for i in blurred:
            x[i] = blur_hr(x[i], faces[i][0].blur).to(torch.float32)
    lr = degrade.resize(x, (h // scale, w // scale), antialias=p.antialias)  # float32, clamped
    out = lr.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy().copy()  # = to_uint8(quantize(lr))
    for i, (d, rng) in enumerate(faces):
        if d.noise > 0:
            out[i] = add_noise(lr[i].numpy(), d.noise, rng)
        if d.jpeg is not None:
            out[i] = jpeg_uint8(out[i], d.jpeg)
    return out


def degrade_lr(hr: torch.Tensor, protocol: str | Protocol | None = None, names=None, *, scale: int = 8,
               salt: str | None = None) -> torch.Tensor:
    """HR batch (B×3×H×W float in [0, 1], any device) → its 8-bit LR by ``protocol``, as a float batch on the
    HR's device: :func:`.degrade.make_lr` for ``paper``/``clean``; for a degradation protocol the faces'
    draws come from ``names`` (one per face; optional for ``blur*``/``jpeg*``) and ``salt`` (``None``: the
    prepared split's draw), computed on the CPU so every device gives the prepared bytes."""
    from . import degrade

    p = protocols.get(protocol)
    if not isinstance(p, Degraded):
        return degrade.make_lr(hr, scale, protocol=p)
    lr = degrade.to_tensor(_degraded_uint8(hr, p, names, int(scale), salt), device=hr.device)
    return lr.to(hr.dtype) if hr.is_floating_point() else lr


def lr_uint8(hr: np.ndarray, protocol: str | Protocol | None = None, names=None, *, scale: int = 8,
             salt: str | None = None, chunk: int = 512) -> np.ndarray:
    """N×H×W×3 uint8 HR → N×(H/scale)×(W/scale)×3 uint8 LR by ``protocol`` (``prepare``'s LR), in chunks."""
    from . import degrade

    p = protocols.get(protocol)
    n = len(hr)
    if names is not None and len(names) != n:
        raise ValueError(f"{len(names)} face names for {n} faces")
    out = []
    for i in range(0, n, chunk):
        x = degrade.to_tensor(hr[i : i + chunk])
        if isinstance(p, Degraded):
            out.append(_degraded_uint8(x, p, None if names is None else list(names[i : i + chunk]), int(scale), salt))
        else:
            out.append(degrade.to_uint8(degrade.make_lr(x, int(scale), protocol=p)))
    if out:
        return np.concatenate(out)
    return np.zeros((0, hr.shape[1] // scale, hr.shape[2] // scale, 3), np.uint8) if hr.ndim == 4 else \
        np.zeros((0, 0, 0, 3), np.uint8)


# Registered here (not imported by protocols.py) so that either module may be imported first.
protocols.PROTOCOLS.update(REGISTRY)
