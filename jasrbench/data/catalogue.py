"""The datasets ``jasrbench download`` can fetch: files, URLs, published SHA-256, layouts.

Data only, plus the layout checks that say a download is complete; how files
are fetched lives in ``fetch.py``. Checksums are the published ones or
``None`` (never invented); datasets behind a licence form are listed in
``MANUAL`` with what to do instead. Sources and terms: datasets/raw/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, JasrbenchError
from . import w300
from .images import IMAGE_SUFFIXES
from .lfw import image_path, read_pairs


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    ``urls``: the official URL first, then documented mirrors (tried in order).
    ``sha256``: a *published* checksum, or ``None`` when none could be found
    (then ``checksum_source`` says so and ``--accept-unverified`` is needed).
    ``unpack``: ``"tar"`` (any compression), ``"zip"``, or ``None`` (the file
    is copied as it is). Its content lands in ``DIR/into``; an archive whose
    only top-level entry is a folder named ``strip`` has that folder removed.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None = None
    unpack: str | None = None
    into: str = ""
    strip: str | None = None
    checksum_source: str = ""


@dataclass(frozen=True)
class Source:
    """One way to obtain a dataset: a set of files and the page describing them."""

    dataset: str  # selects the layout check: "300w" or "lfw"
    name: str
    description: str
    page: str
    terms: str
    files: tuple[RemoteFile, ...]

    def check_layout(self, root: Path) -> list[str]:
        """Check the dataset's layout under ``root``; returns summary lines, raises ``DataError``."""
        return LAYOUT_CHECKS[self.dataset](root)


def file_urls(rf: RemoteFile, url_base: str | None) -> tuple[str, ...]:
    """The URLs to try for ``rf``: ``url_base/NAME`` when a mirror is set, else the catalogue's."""
    if url_base:
        return (f"{url_base.rstrip('/')}/{rf.name}",)
    return rf.urls


# ---------------------------------------------------------------------------
# Layout checks
# ---------------------------------------------------------------------------

# 300W's subset folders as w300.py defines them, listed folder by folder
# (lfpw/, helen/, afw/, ibug/: one official zip each).
W300_FOLDERS = tuple(dict.fromkeys(s.split("/")[0] for s in w300.SUBSETS))
W300_SUBSETS = tuple(s for top in W300_FOLDERS for s in w300.SUBSETS if s.split("/")[0] == top)


def check_300w(root: Path) -> list[str]:
    """300W's official layout: each subset folder with images beside ``.pts`` files."""
    missing = [s for s in W300_SUBSETS if not (root / s).is_dir()]
    if missing:
        raise DataError(root, f"not 300W's official layout: missing folder(s) {', '.join(missing)}")
    lines = []
    for subset in W300_SUBSETS:
        files = [p for p in (root / subset).iterdir() if p.is_file()]
        pts = {p.stem for p in files if p.suffix.lower() == ".pts"}
        images = {p.stem for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
        if not pts:
            raise DataError(root / subset, "no .pts annotation files")
        line = f"{subset}: {len(pts & images)} annotated images"
        if pts - images:
            line += f", {len(pts - images)} .pts without an image"
        if images - pts:
            line += f", {len(images - pts)} images without a .pts"
        lines.append(line)
    return lines


def check_lfw(root: Path) -> list[str]:
    """LFW's layout: ``NAME/NAME_0001.jpg`` folders and a ``pairs.txt`` whose images all exist."""
    pairs = read_pairs(root / "pairs.txt")
    needed = sorted({(p.name1, p.index1) for p in pairs} | {(p.name2, p.index2) for p in pairs})
    absent = [image_path(root, n, i) for n, i in needed if not image_path(root, n, i).is_file()]
    if absent:
        raise DataError(root, f"{len(absent)} of {len(needed)} images named by pairs.txt are missing, e.g. {absent[0]}")
    people = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    images = sum(1 for person in people for f in person.iterdir() if f.suffix.lower() == ".jpg")
    folds = len({p.fold for p in pairs})
    return [f"{len(people)} identities, {images} images", f"pairs.txt: {len(pairs)} pairs in {folds} folds"]


LAYOUT_CHECKS: dict[str, Callable[[Path], list[str]]] = {"300w": check_300w, "lfw": check_lfw}


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------

_IBUG_PAGE = "https://ibug.doc.ic.ac.uk/resources/facial-point-annotations/"
_300W_TERMS = (
    "300W annotations: research use under iBUG's terms (https://ibug.doc.ic.ac.uk/resources/300-W/); "
    "the photographs belong to their owners"
)
_NO_PUBLISHED_SHA = (
    "no SHA-256 is published for this file (neither by iBUG nor by dlib); "
    "the hash is computed, printed and stored beside it on first download"
)


def _ibug_zip(subset: str) -> RemoteFile:
    # The official zips hold the subset's files without a top folder (afw.zip ->
    # *.jpg + *.pts; helen.zip -> trainset/, testset/); they are unpacked into
    # DIR/<subset>. A top folder named like the subset is stripped if present.
    return RemoteFile(
        name=f"{subset}.zip",
        urls=(f"https://ibug.doc.ic.ac.uk/download/annotations/{subset}.zip",),
        sha256=None,
        unpack="zip",
        into=subset,
        strip=subset,
        checksum_source=_NO_PUBLISHED_SHA,
    )


_LFW_SHA_SOURCE = (
    "SHA-256 and size published in tensorflow/datasets "
    "(tensorflow_datasets/url_checksums/lfw.txt) and in scikit-learn "
    "(sklearn/datasets/_lfw.py, ARCHIVE), which also names the figshare mirror"
)
_PAIRS_SHA_SOURCE = (
    "SHA-256 published in scikit-learn (sklearn/datasets/_lfw.py, TARGETS); "
    "the same bytes as ../shared/datasets/lfw/pairs.txt, whose MD5 "
    "9f1ba174e4e1c508ff7cdf10ac338a7d is the one torchvision publishes"
)

CATALOGUE: dict[str, dict[str, Source]] = {
    "300w": {
        "ibug": Source(
            dataset="300w",
            name="ibug",
            description="official iBUG 68-point re-annotations: "
                        + ", ".join(f"{s}.zip" for s in sorted(W300_FOLDERS)),
            page=_IBUG_PAGE,
            terms=_300W_TERMS,
            files=tuple(_ibug_zip(s) for s in sorted(W300_FOLDERS)),
        ),
        "dlib": Source(
            dataset="300w",
            name="dlib",
            description="dlib's redistribution of the same four subsets (plus dlib's XML label files) in one tarball",
            page="http://dlib.net/files/data/",
            terms=_300W_TERMS,
            files=(
                RemoteFile(
                    name="ibug_300W_large_face_landmark_dataset.tar.gz",
                    urls=("http://dlib.net/files/data/ibug_300W_large_face_landmark_dataset.tar.gz",),
                    sha256=None,
                    unpack="tar",
                    strip="ibug_300W_large_face_landmark_dataset",
                    checksum_source=_NO_PUBLISHED_SHA,
                ),
            ),
        ),
    },
    "lfw": {
        "official": Source(
            dataset="lfw",
            name="official",
            description="LFW images (lfw.tgz) and the View-2 protocol (pairs.txt)",
            page="http://vis-www.cs.umass.edu/lfw/",
            terms="LFW: research use; the photographs belong to their owners",
            files=(
                RemoteFile(
                    name="lfw.tgz",
                    # The official host stopped answering in 2025 (tensorflow/datasets
                    # PR 11020, pytorch/vision issue 8888); figshare is the mirror
                    # scikit-learn and tensorflow-datasets download from.
                    urls=(
                        "http://vis-www.cs.umass.edu/lfw/lfw.tgz",
                        "https://ndownloader.figshare.com/files/5976018",
                    ),
                    sha256="055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
                    size=180566744,
                    unpack="tar",
                    strip="lfw",
                    checksum_source=_LFW_SHA_SOURCE,
                ),
                RemoteFile(
                    name="pairs.txt",
                    urls=(
                        "http://vis-www.cs.umass.edu/lfw/pairs.txt",
                        "https://ndownloader.figshare.com/files/5976006",
                    ),
                    sha256="ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
                    size=155335,
                    checksum_source=_PAIRS_SHA_SOURCE,
                ),
            ),
        ),
    },
}
DEFAULT_SOURCE = {"300w": "ibug", "lfw": "official"}

# Datasets this command cannot fetch: what to do instead.
MANUAL: dict[str, str] = {
    "helen": (
        "HELEN (194-point annotations) is not fetched by this command: download the images and the "
        "annotation files from the dataset's page http://www.ifp.illinois.edu/~vuongle2/helen/ and put "
        "them in datasets/raw/helen/ (see datasets/raw/README.md)"
    ),
    "aflw": (
        "AFLW needs a licence agreement: register at "
        "https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/aflw/ , then put the "
        "images and the annotation database in datasets/raw/aflw/ (see datasets/raw/README.md)"
    ),
}


def get_source(dataset: str, source: str | None = None) -> Source:
    """The catalogue's ``source`` (default: the official one) of ``dataset``; manual datasets say how."""
    dataset = dataset.lower()
    if dataset in MANUAL:
        raise JasrbenchError(MANUAL[dataset])
    if dataset not in CATALOGUE:
        known = ", ".join(sorted([*CATALOGUE, *MANUAL]))
        raise JasrbenchError(f"unknown dataset {dataset!r} (known: {known})")
    sources = CATALOGUE[dataset]
    name = source or DEFAULT_SOURCE[dataset]
    if name not in sources:
        raise JasrbenchError(f"{dataset} has no source {name!r} (sources: {', '.join(sources)})")
    return sources[name]
