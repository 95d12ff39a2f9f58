"""What every dataset reader yields: face records grouped into splits, and the bad-input policy.

A reader turns a raw dataset folder into a :class:`DatasetPlan`: per buildable split, its
:class:`FaceRecord` list (image file, landmarks in 0-based source pixel centres, which are
annotated, optional face box and identity); per unbuildable split, the reason. Bad input
(DESIGN §6) goes through one :class:`BadInput` policy: without ``--skip-bad`` the first
:class:`~jasrbench.errors.DataError` stops everything; with it, the face, file or pair is left
out, logged, counted and listed in ``summary.json``, never silently dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class FaceRecord:
    """One face of a raw dataset, before cropping.

    ``points``: K×2 float32, 0-based pixel centres (x, y) in the source image
    (K = 0 for sets without landmarks); ``visible``: K bool (annotated points);
    ``box``: annotated face box (x0, y0, x1, y1) in source pixels or ``None``
    (then the box is the min/max of the visible points); ``source``: the
    annotation file to name in errors about this face (the image otherwise).
    """

    name: str
    image: Path
    points: np.ndarray
    visible: np.ndarray
    box: np.ndarray | None = None
    identity: str | None = None
    source: Path | None = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        if self.visible.shape[0] != self.points.shape[0]:
            raise ValueError(f"{self.name}: {len(self.points)} points but {len(self.visible)} visibility flags")
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float32).reshape(4)

    @property
    def annotation(self) -> Path:
        """The file an error about this face names."""
        return self.source if self.source is not None else self.image


@dataclass
class PairSpec:
    """Verification pairs of an LFW-layout split, by face name."""

    names1: list[str]
    names2: list[str]
    same: list[bool]
    fold: list[int]


@dataclass
class DatasetPlan:
    """A reader's result: the faces of each buildable split and why the others are not."""

    dataset: str
    num_points: int
    mirror: tuple[int, ...] | None
    splits: dict[str, list[FaceRecord]]
    unavailable: dict[str, str] = field(default_factory=dict)
    training_splits: tuple[str, ...] = ("train",)
    crop_rule: str = "landmark box (min/max of the visible points)"
    source: str = ""
    pairs: dict[str, PairSpec] = field(default_factory=dict)
    # Free-form, JSON-ready facts for summary.json (subsets used/missing, counts, notes).
    info: dict[str, Any] = field(default_factory=dict)
    # Per split: facts for summary.json (e.g. the subsets it was built from).
    split_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Points outside the image that the dataset's policy made invisible (AFLW).
    outside_policy: str = "error"  # "error" or "invisible"


class BadInput:
    """The bad-input policy of one run: raise, or record and skip (``--skip-bad``)."""

    def __init__(self, skip_bad: bool, root: Path | None = None):
        self.skip_bad = skip_bad
        self.root = root
        self.skipped: list[dict[str, str]] = []

    def _display(self, path: Path | None) -> str:
        if path is None:
            return ""
        if self.root is not None:
            try:
                return Path(path).resolve().relative_to(Path(self.root).resolve()).as_posix()
            except ValueError:
                pass
        return str(path)

    def handle(self, error: DataError, what: str = "file") -> None:
        """Raise ``error``, or (with ``--skip-bad``) log and record it as a skipped ``what``."""
        if not self.skip_bad:
            raise error
        entry = {"path": self._display(error.path), "problem": error.problem, "skipped": what}
        self.skipped.append(entry)
        log.warning("skipping %s %s: %s", what, entry["path"], error.problem)

    @property
    def count(self) -> int:
        return len(self.skipped)

    def summary(self) -> dict[str, Any]:
        files = sorted(self.skipped, key=lambda e: (e["path"], e["problem"], e["skipped"]))
        return {"count": len(files), "files": files}


def check_unique_names(records: list[FaceRecord], bad: BadInput, where: str) -> list[FaceRecord]:
    """Drop (with ``--skip-bad``) or refuse duplicate face names; the first occurrence stays."""
    seen: dict[str, FaceRecord] = {}
    out = []
    for rec in records:
        first = seen.get(rec.name)
        if first is not None:
            bad.handle(DataError(rec.annotation, f"duplicate face name {rec.name!r} in {where} "
                                                 f"(also given by {first.annotation})"), "face")
            continue
        seen[rec.name] = rec
        out.append(rec)
    return out
