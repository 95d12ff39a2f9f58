"""LFW's layout and View-2 verification protocol (``pairs.txt``), for ``jasrbench prepare lfw``.

Layout: ``ROOT/NAME/NAME_0001.jpg`` (identity ``NAME``, no landmarks). ``pairs.txt``: a header
``FOLDS N``, then per fold N same-person lines ``name n1 n2`` and N different-person lines
``name1 n1 name2 n2``. An optional ``people.txt`` must agree with the folders. The same reader
serves ``../shared/datasets/verify`` (a real set in LFW's format).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .records import BadInput, DatasetPlan, FaceRecord, PairSpec


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


# ---------------------------------------------------------------- the folder layout

_IMAGE_FILE = re.compile(r"^(?P<name>.+)_(?P<index>\d{4})\.jpg$")


def read_people(path: str | Path) -> dict[str, int]:
    """``people.txt``: person → number of images.

    Two styles: one list (``N`` then N lines ``name count``, as
    ``peopleDevTrain.txt`` and ``verify/people.txt``) or View 2's folds
    (``F`` then F blocks, each ``n`` then n lines ``name count``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "people file not found")
    lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]

    def count(parts: list[str], lineno: int) -> int:
        if len(parts) != 1 or not parts[0].isdigit():
            raise DataError(path, f"line {lineno}: expected a count, found {' '.join(parts)!r}")
        return int(parts[0])

    if not lines:
        raise DataError(path, "empty people file")
    first = count(lines[0], 1)
    blocks = [(1, first)] if len(lines) == first + 1 else None
    people: dict[str, int] = {}
    pos = 1
    if blocks is None:  # View 2: `first` folds, each with its own count line
        for _ in range(first):
            if pos >= len(lines):
                raise DataError(path, f"header promises {first} folds, the file ends after {pos} lines")
            n = count(lines[pos], pos + 1)
            blocks = (blocks or []) + [(pos + 1, n)]
            pos += 1 + n
        if pos != len(lines):
            raise DataError(path, f"{len(lines) - pos} lines after the last fold")
    for start, n in blocks or []:
        for lineno in range(start + 1, start + n + 1):
            if lineno - 1 >= len(lines):
                raise DataError(path, f"a block promises {n} people, the file ends at line {lineno - 1}")
            parts = lines[lineno - 1]
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(path, f"line {lineno}: expected 'name count', found {' '.join(parts)!r}")
            if parts[0] in people:
                raise DataError(path, f"line {lineno}: {parts[0]} listed twice")
            people[parts[0]] = int(parts[1])
    return people


def scan_layout(root: str | Path, bad: BadInput) -> list[FaceRecord]:
    """Every ``NAME/NAME_NNNN.jpg`` under ``root`` as a face record (no landmarks), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "LFW-layout folder not found")
    people = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    records = []
    for person in people:
        files = sorted(p for p in person.iterdir() if not p.name.startswith("."))
        if not files:
            bad.handle(DataError(person, "empty person folder: no images"), "folder")
            continue
        for f in files:
            m = _IMAGE_FILE.match(f.name)
            if not m or m.group("name") != person.name or not f.is_file():
                bad.handle(DataError(f, f"not an LFW image name: expected {person.name}/{person.name}_NNNN.jpg"))
                continue
            records.append(FaceRecord(name=f"{person.name}/{f.stem}", image=f, points=np.zeros((0, 2)),
                                      visible=np.zeros(0, dtype=bool), identity=person.name, source=f))
    if not records and not bad.skipped:
        raise DataError(root, "empty LFW-layout folder: no NAME/NAME_0001.jpg images")
    return records


def read_lfw(raw: str | Path, bad: BadInput, pairs_file: str | Path | None = None) -> DatasetPlan:
    """An LFW-layout folder (LFW, or ``../shared/datasets/verify``) → a plan with one ``test`` split and its pairs.

    ``pairs_file`` defaults to ``raw/pairs.txt``; ``raw/people.txt``, when
    present, must agree with the folders. A pair naming a missing image is an
    error naming the image (with ``--skip-bad``: that pair is skipped and counted).
    """
    raw = Path(raw)
    records = scan_layout(raw, bad)
    pairs_path = Path(pairs_file) if pairs_file is not None else raw / "pairs.txt"
    pairs = read_pairs(pairs_path)
    have = {r.name for r in records}
    counts: dict[str, int] = {}
    for r in records:
        counts[r.identity] = counts.get(r.identity, 0) + 1
    people_path = raw / "people.txt"
    info: dict = {"identities": len(counts), "images": len(records)}
    if people_path.is_file():
        for person, n in read_people(people_path).items():
            if counts.get(person, 0) != n:
                bad.handle(DataError(people_path, f"lists {person} with {n} images, the folder has "
                                                  f"{counts.get(person, 0)}"), "people.txt entry")
        info["people_file"] = people_path.name
    spec = PairSpec([], [], [], [])
    for i, p in enumerate(pairs):
        a, b = image_name(p.name1, p.index1), image_name(p.name2, p.index2)
        missing = [(n, k) for n, k, key in ((p.name1, p.index1, f"{p.name1}/{a}"), (p.name2, p.index2, f"{p.name2}/{b}"))
                   if key not in have]
        if missing:
            n, k = missing[0]
            bad.handle(DataError(image_path(raw, n, k), f"named by {pairs_path.name} (line {i + 2}, fold {p.fold + 1}) "
                                                        "but missing"), "pair")
            continue
        spec.names1.append(f"{p.name1}/{a}")
        spec.names2.append(f"{p.name2}/{b}")
        spec.same.append(p.same)
        spec.fold.append(p.fold)
    info.update(pairs_file=pairs_path.name, pairs_listed=len(pairs), folds=len({p.fold for p in pairs}))
    return DatasetPlan(
        dataset="lfw", num_points=0, mirror=None, splits={"test": records}, training_splits=(),
        source="LFW layout (NAME/NAME_NNNN.jpg + pairs.txt)", pairs={"test": spec}, info=info,
    )
