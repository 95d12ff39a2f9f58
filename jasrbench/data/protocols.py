"""Named degradation protocols (DESIGN §2): how HR crops, LR images and the shared bicubic
upsampling are made. One code path; a protocol changes only numbers and kernels.

- ``paper``: as the authors made their data (their code calls OpenCV's ``INTER_CUBIC``): crop
  = the landmark box's longer side × ``PAPER_MARGIN`` (calibrated so the Bicubic row lands on
  the paper's; ``jasrbench calibrate``), LR and upsampling by **non-antialiased** cubic
  convolution (Keys a = −0.75), 8-bit.
- ``clean``: the modern convention: margin 1.3, antialiased bicubic (a = −0.5, MATLAB
  ``imresize``) both ways; not comparable with the paper's numbers.

Either may JPEG the LR (``jpeg_quality``; off in both). Split files record their protocol, and
mixing protocols between a model and a split is an error naming both (:func:`require_same`).

The robustness track's protocols (``blur1``…``blur4``, ``noise2``…``noise20``, ``jpeg90``…``jpeg30``,
``mixed``: the paper protocol plus seeded per-face blur, noise and JPEG) live in :mod:`.degradations`,
which registers them in :data:`PROTOCOLS`; their LR is made by :func:`.degradations.degrade_lr`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ConfigError

# Chosen from the calibration grid (results/calibration/bicubic_300w_common.csv): the margin
# whose Bicubic PSNR and SSIM on 300W common are jointly closest to the paper's 21.36 / 0.594.
PAPER_MARGIN = 1.65
CLEAN_MARGIN = 1.3


@dataclass(frozen=True)
class Protocol:
    """How a prepared split's faces are framed and degraded."""

    name: str
    margin: float  # crop side = margin × the face box's longer side
    antialias: bool  # True: antialiased bicubic a=-0.5 (clean); False: non-antialiased cubic a=-0.75 (paper)
    jpeg_quality: int | None = None  # JPEG-compress the 8-bit LR at this quality (None: no JPEG)
    # True for the camera degradations (jasrbench.data.degradations): their LR depends on the face (its
    # seeded draw), so only degradations.degrade_lr / lr_uint8 make it, never degrade.make_lr.
    per_face = False

    @property
    def kernel(self) -> str:
        if self.antialias:
            return "antialiased bicubic (torch, Keys a=-0.5, kernel stretched when downscaling)"
        return "non-antialiased cubic (torch, Keys a=-0.75, pixel-centre aligned, as OpenCV INTER_CUBIC)"

    def describe(self) -> str:
        jpeg = f", LR JPEG q{self.jpeg_quality}" if self.jpeg_quality else ""
        return f"{self.name}: crop margin {self.margin:g}, LR and upsampling by {self.kernel}, 8-bit LR{jpeg}"

    def with_(self, **changes) -> Protocol:
        """A variant (the calibration grid): same name, other margin or JPEG quality."""
        return replace(self, **changes)


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol("paper", PAPER_MARGIN, antialias=False),
    "clean": Protocol("clean", CLEAN_MARGIN, antialias=True),
}
DEFAULT = "paper"
# Splits and checkpoints written before protocols existed were made the clean way.
LEGACY = "clean"


def get(protocol: str | Protocol | None) -> Protocol:
    """The protocol named ``protocol`` (``None``: the default, ``paper``)."""
    if isinstance(protocol, Protocol):
        return protocol
    name = DEFAULT if protocol is None else str(protocol)
    try:
        return PROTOCOLS[name]
    except KeyError:
        hint = _degradations.unknown_hint(name)
        raise ConfigError(f"unknown protocol {name!r}{hint}; choose one of {', '.join(PROTOCOLS)}") from None


def require_same(split_protocol: str, split_where: str, other_protocol: str, other_what: str) -> None:
    """Error unless a split and a model/profile share their protocol; names both."""
    if split_protocol != other_protocol:
        raise ConfigError(
            f"protocol mismatch: {split_where} was prepared with protocol {split_protocol!r}, but {other_what} "
            f"uses protocol {other_protocol!r}; prepare the data again with `--protocol {other_protocol}` "
            f"or use a {split_protocol!r} profile/model"
        )


# The robustness protocols (issue 26) register themselves in PROTOCOLS; imported last, as it imports this module.
from . import degradations as _degradations  # noqa: E402
