"""The prepared-split file: what ``prepare`` writes and ``train``/``evaluate`` read (DESIGN §2 item 4).

One file per split (``<out>/<split>.npz``, written atomically and
byte-identically for identical inputs by :func:`jasrbench.files.save_arrays`):

=====================  ====================  ==========================================
array                  shape / dtype         meaning
=====================  ====================  ==========================================
``hr``                 N×128×128×3 uint8     the face crop at HR
``lr``                 N×16×16×3 uint8       HR ↓8 by the protocol's kernel, 8-bit
``landmarks``          N×K×2 float32         0-based pixel centres (x, y) in HR pixels
``visible``            N×K bool              annotated (AFLW marks invisible points)
``boxes``              N×4 float32           face box (x0, y0, x1, y1) in HR pixels:
                                             the metrics' region (DESIGN §4)
``names``              N unicode             unique face names (``subset/file``)
``identities``         N unicode             person of each face (LFW-layout sets only)
``context``            N×C×C×3 uint8         larger crop, same centre, same pixel
                                             scale, for on-the-fly augmentation
                                             (training splits only)
``pairs``              P×2 int64             verification pairs (indices into N)
``pair_same``          P bool                same person?
``pair_fold``          P int64               0-based fold of each pair
=====================  ====================  ==========================================

K is 0 for sets without landmarks (LFW). The HR crop is the central
``HR_SIZE`` square of the context crop, so context landmarks are the HR
landmarks shifted by ``(C − HR_SIZE)/2``. ``metadata`` (JSON member) records the
format version, dataset, split, points, sizes, the degradation protocol
(``protocol``: ``paper`` or ``clean``, :mod:`.protocols`) with its margin and
kernel, context factor, crop rule and mirror permutation. Format 2 added the
protocol: a format-1 file is refused (re-run prepare).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..files import load_arrays, save_arrays

FORMAT_VERSION = 2
_REQUIRED = ("hr", "lr", "landmarks", "visible", "boxes", "names")
_OPTIONAL = ("identities", "context", "pairs", "pair_same", "pair_fold")


@dataclass
class PreparedSplit:
    hr: np.ndarray
    lr: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    boxes: np.ndarray
    names: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    identities: np.ndarray | None = None
    context: np.ndarray | None = None
    pairs: np.ndarray | None = None
    pair_same: np.ndarray | None = None
    pair_fold: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.hr)

    @property
    def protocol(self) -> str:
        """The degradation protocol the split was prepared with (``paper`` or ``clean``)."""
        return str(self.metadata.get("protocol", "clean"))

    @property
    def num_points(self) -> int:
        return int(self.landmarks.shape[1])

    @property
    def context_offset(self) -> float:
        """Shift from HR to context pixel coordinates."""
        if self.context is None:
            raise ValueError("this split has no context crops")
        return (self.context.shape[1] - self.hr.shape[1]) / 2

    def lr_at(self, scale: int, faces: slice | np.ndarray | None = None) -> np.ndarray:
        """The LR of ``faces`` at ``scale`` (N×(128/scale)²×3 uint8): the stored ×8 LR, else their HR degraded
        now by the split's protocol (:func:`jasrbench.data.degrade.make_lr`, so it equals a training batch's LR).
        Scorers ask batch by batch, so no float copy of the whole split is made."""
        from . import degrade  # local: degrade imports torch, the split file format does not need it

        if int(scale) == degrade.SCALE:
            return self.lr if faces is None else self.lr[faces]
        hr = self.hr if faces is None else self.hr[faces]
        lr = degrade.make_lr(degrade.to_tensor(hr), int(scale), protocol=self.protocol)
        return degrade.to_uint8(lr)

    def subset(self, indices: np.ndarray) -> PreparedSplit:
        """The faces at ``indices`` (pairs are dropped: they index the full split)."""
        idx = np.asarray(indices)
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return PreparedSplit(
            hr=self.hr[idx], lr=self.lr[idx], landmarks=self.landmarks[idx], visible=self.visible[idx],
            boxes=self.boxes[idx], names=self.names[idx], metadata=dict(self.metadata, subset=len(idx)),
            identities=take(self.identities), context=take(self.context),
        )

    def subset_pairs(self, per_fold: int) -> PreparedSplit:
        """The first ``per_fold`` same and ``per_fold`` different pairs of every fold, and only their faces.

        Keeps LFW's 10-fold protocol intact on a smaller set (a profile knob for fast runs).
        """
        if self.pairs is None:
            raise ValueError("this split has no verification pairs")
        keep = np.zeros(len(self.pairs), dtype=bool)
        for fold in np.unique(self.pair_fold):
            for same in (True, False):
                idx = np.flatnonzero((self.pair_fold == fold) & (self.pair_same == same))
                keep[idx[:per_fold]] = True
        pairs = self.pairs[keep]
        faces = np.unique(pairs)
        remap = np.full(len(self), -1, dtype=np.int64)
        remap[faces] = np.arange(len(faces))
        out = self.subset(faces)
        out.pairs, out.pair_same, out.pair_fold = remap[pairs], self.pair_same[keep], self.pair_fold[keep]
        out.metadata["pairs_per_fold"] = per_fold
        return out

    def validate(self, where: str | Path = "prepared split") -> None:
        n = len(self.hr)
        if self.hr.dtype != np.uint8 or self.hr.ndim != 4 or self.hr.shape[-1] != 3:
            raise DataError(where, f"hr must be N×H×W×3 uint8, got {self.hr.dtype} {self.hr.shape}")
        if self.lr.dtype != np.uint8 or self.lr.shape[0] != n:
            raise DataError(where, f"lr must be N×h×w×3 uint8, got {self.lr.dtype} {self.lr.shape}")
        if self.landmarks.shape[:1] != (n,) or self.landmarks.ndim != 3 or self.landmarks.shape[-1] != 2:
            raise DataError(where, f"landmarks must be N×K×2, got {self.landmarks.shape}")
        if self.visible.shape != self.landmarks.shape[:2]:
            raise DataError(where, f"visible must be N×K, got {self.visible.shape}")
        if self.boxes.shape != (n, 4):
            raise DataError(where, f"boxes must be N×4, got {self.boxes.shape}")
        if len(self.names) != n or len(set(self.names.tolist())) != n:
            raise DataError(where, "names must be unique, one per face")
        pts = self.landmarks[self.visible]
        if not np.isfinite(pts).all():
            raise DataError(where, "non-finite visible landmarks")


def save_split(path: str | Path, split: PreparedSplit) -> None:
    """Validate and write ``split`` atomically."""
    split.validate(path)
    arrays = {
        "hr": split.hr,
        "lr": split.lr,
        "landmarks": split.landmarks.astype(np.float32),
        "visible": split.visible.astype(bool),
        "boxes": split.boxes.astype(np.float32),
        "names": np.asarray(split.names, dtype=str),
    }
    for name in _OPTIONAL:
        value = getattr(split, name)
        if value is not None:
            arrays[name] = np.asarray(value, dtype=str) if name == "identities" else value
    save_arrays(path, arrays, {**split.metadata, "format_version": FORMAT_VERSION})


def load_split(path: str | Path) -> PreparedSplit:
    """Read a prepared split; :class:`DataError` for a missing, foreign or outdated file."""
    arrays, metadata = load_arrays(path)
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(path, f"prepared-split format version {version!r}, this code reads {FORMAT_VERSION}: re-run prepare")
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise DataError(path, f"not a prepared split: missing arrays {missing}")
    split = PreparedSplit(**{k: arrays[k] for k in _REQUIRED}, metadata=metadata,
                          **{k: arrays.get(k) for k in _OPTIONAL})
    split.validate(path)
    return split
