"""LFW's layout and View-2 verification protocol (``pairs.txt``).

Layout: ``ROOT/NAME/NAME_0001.jpg``. ``pairs.txt``: a header ``FOLDS N``, then
for each fold N same-person lines ``name n1 n2`` followed by N different-person
lines ``name1 n1 name2 n2`` (tab- or space-separated). The same reader serves
LFW itself and ``../shared/datasets/verify`` (a real set in LFW's exact format).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError


@dataclass(frozen=True)
class Pair:
    """One verification pair; ``fold`` is 0-based."""

    fold: int
    name1: str
    index1: int
    name2: str
    index2: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2


def image_name(name: str, index: int) -> str:
    """LFW's face name of person ``name``'s image ``index`` (1-based): ``NAME_0001``."""
    return f"{name}_{index:04d}"


def image_path(root: str | Path, name: str, index: int) -> Path:
    return Path(root) / name / f"{image_name(name, index)}.jpg"


def read_pairs(path: str | Path) -> list[Pair]:
    """Parse a View-2 ``pairs.txt``; checks the header's fold and pair counts."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "pairs file not found")
    lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 2:
        raise DataError(path, "first line must be the header 'FOLDS PAIRS_PER_CLASS'")
    try:
        folds, per_class = int(lines[0][0]), int(lines[0][1])
    except ValueError:
        raise DataError(path, f"header {' '.join(lines[0])!r} is not two integers") from None
    body = lines[1:]
    if len(body) != folds * 2 * per_class:
        raise DataError(path, f"header promises {folds}×2×{per_class} = {folds * 2 * per_class} pairs, file has {len(body)}")
    pairs = []
    for i, parts in enumerate(body):
        lineno = i + 2
        fold, pos = divmod(i, 2 * per_class)
        expect_same = pos < per_class
        try:
            if len(parts) == 3:
                pair = Pair(fold, parts[0], int(parts[1]), parts[0], int(parts[2]))
            elif len(parts) == 4:
                pair = Pair(fold, parts[0], int(parts[1]), parts[2], int(parts[3]))
            else:
                raise DataError(path, f"line {lineno}: expected 3 or 4 fields, found {len(parts)}")
        except ValueError:
            raise DataError(path, f"line {lineno}: image numbers must be integers ({' '.join(parts)!r})") from None
        if len(parts) == 3 and not expect_same or len(parts) == 4 and expect_same:
            kind = "same-person" if expect_same else "different-person"
            raise DataError(path, f"line {lineno}: fold {fold + 1} expects a {kind} line here")
        if len(parts) == 4 and pair.same:
            raise DataError(path, f"line {lineno}: different-person line names the same person twice")
        if min(pair.index1, pair.index2) < 1:
            raise DataError(path, f"line {lineno}: image numbers are 1-based")
        pairs.append(pair)
    return pairs
