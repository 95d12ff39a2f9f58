"""``jasrbench download DATASET --to DIR``: fetch the public datasets, checked.

What it does, per file of the catalogue below:

1. **Download** into ``DIR/.downloads/NAME.part``. A rerun resumes a partial
   file with an HTTP ``Range`` request; a server that answers ``200`` instead of
   ``206`` (no range support) restarts it from the beginning. Transient failures
   (timeouts, dropped connections, HTTP 408/429/5xx) are retried with
   exponential backoff; an attempt that made progress resets the count. A
   server that cannot be reached, or answers 404 or an HTML page (a terms or
   registration form), moves on to the file's next URL (a documented mirror).
2. **Verify** SHA-256. A mismatch moves the file aside
   (``NAME.sha256-mismatch``) and raises an error naming the URL and both
   hashes. Files without a *published* checksum (``sha256=None``; none is
   ever invented) get their hash computed, printed and stored beside them
   (``NAME.sha256``); continuing then needs ``--accept-unverified``. Only a
   complete, verified file is renamed to ``NAME`` (atomically); an existing
   verified ``NAME`` is never downloaded again.
3. **Extract** into a temporary folder beside the destination, then move the
   result into place with renames. Every member is checked first: no absolute
   paths, no ``..`` components, no symbolic or hard links, no device files;
   tar archives additionally go through Python's ``filter="data"`` where it
   exists. A refused member or a corrupt archive is an error naming the
   archive; nothing is moved into place.
4. **Check the layout** (300W: ``lfpw/trainset`` … ``ibug/`` with ``.pts``
   files; LFW: every image ``pairs.txt`` names), write
   ``DIR/.jasrbench-download.json`` and print the ``jasrbench prepare``
   command to run next. A rerun on a completed folder touches no network.

``--url-base URL`` (or ``$JASRBENCH_DOWNLOAD_MIRROR``) fetches every file as
``URL/NAME`` instead, for mirrors and tests (``file:///dir`` works for a local
copy); checksums still apply.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.client
import json
import logging
import lzma
import os
import re
import shutil
import socket
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from .. import __version__
from ..errors import DataError, JasrbenchError
from ..io import atomic_write_text, to_json
from .lfw import image_path, read_pairs

log = logging.getLogger(__name__)

MIRROR_ENV = "JASRBENCH_DOWNLOAD_MIRROR"
DOWNLOADS_DIR = ".downloads"
MARKER = ".jasrbench-download.json"
_CHUNK = 1 << 20
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_HAS_TAR_FILTER = hasattr(tarfile, "data_filter")  # Python 3.8.17+, 3.9.17+, 3.10.12+, 3.11.4+
_TarFilterError = getattr(tarfile, "FilterError", ())


class DownloadError(DataError):
    """A problem with a remote file, named by its URL (``DataError`` would read it as a path)."""

    def __init__(self, url: str, problem: str):
        JasrbenchError.__init__(self, f"{url}: {problem}")
        self.path, self.url, self.problem = None, url, problem


# ---------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------


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
            description="official iBUG 68-point re-annotations: afw.zip, helen.zip, ibug.zip, lfpw.zip",
            page=_IBUG_PAGE,
            terms=_300W_TERMS,
            files=tuple(_ibug_zip(s) for s in ("afw", "helen", "ibug", "lfpw")),
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


def file_urls(rf: RemoteFile, url_base: str | None) -> tuple[str, ...]:
    """The URLs to try for ``rf``: ``url_base/NAME`` when a mirror is set, else the catalogue's."""
    if url_base:
        return (f"{url_base.rstrip('/')}/{rf.name}",)
    return rf.urls


# ---------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------


@dataclass
class Options:
    timeout: float = 60.0  # seconds without data before an attempt fails
    retries: int = 5  # failed attempts in a row (without progress) before giving up on a URL
    backoff: float = 1.0  # first retry delay, doubled each time (capped at 30 s)
    accept_unverified: bool = False
    url_base: str | None = None
    remove_archives: bool = False
    progress: bool | None = None  # None: bars only on a terminal


class _UrlFailed(Exception):
    """This URL cannot deliver the file (now): try the next one."""


class _Retry(Exception):
    """A transient failure: retry the same URL (resuming)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` (or ``bytes */TOTAL``) -> (START, TOTAL)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _attempt(url: str, part: Path, rf: RemoteFile, opts: Options, manual_hint: str) -> None:
    """One HTTP request: append to (206) or rewrite (200) ``part`` until the body ends."""
    have = _size(part)
    if rf.size is not None and have > rf.size:
        part.unlink()
        have = 0
    headers = {"User-Agent": f"jasrbench/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=opts.timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == have:
                return  # the part file already holds the whole file
            part.unlink()
            raise _Retry("server refused the resume range; restarting from the beginning") from None
        if exc.code in _TRANSIENT_HTTP:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise _UrlFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
            raise _UrlFailed(f"cannot connect ({reason})") from None
        raise _Retry(f"connection failed ({reason})") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Retry(f"connection failed ({exc!r})") from None

    with resp:
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "text/html" and not rf.name.lower().endswith((".html", ".htm")):
            raise _UrlFailed(
                f"answered with an HTML page instead of {rf.name} "
                f"(a terms-of-use or registration form?); {manual_hint}"
            )
        if resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retry(f"server sent bytes from {start}, expected {have}; restarting from the beginning")
            mode = "ab"
        elif resp.status in (200, None):  # None: a file:// URL (a local mirror)
            if have:
                log.info("%s: the server ignored the Range request; restarting %s from the beginning", url, rf.name)
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise _UrlFailed(f"unexpected HTTP status {resp.status}")
        if rf.size is not None and total is not None and total != rf.size:
            raise _UrlFailed(f"server announces {total} bytes, the catalogue expects {rf.size}")

        try:
            fh = open(part, mode)
        except OSError as exc:
            raise DataError(part, f"cannot write ({exc})") from exc
        with fh, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=rf.name, disable=None if opts.progress is None else not opts.progress, leave=False,
        ) as bar:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                    raise _Retry(f"connection lost after {fh.tell()} bytes ({exc!r})") from None
                if not chunk:
                    break
                try:
                    fh.write(chunk)
                except OSError as exc:
                    raise DataError(part, f"cannot write ({exc})") from exc
                bar.update(len(chunk))
            got = fh.tell()
    if total is not None and got < total:
        raise _Retry(f"connection closed after {got} of {total} bytes")
    if total is not None and got > total:
        part.unlink()
        raise _Retry(f"received {got} bytes, more than the announced {total}; restarting")


def _download(url: str, part: Path, rf: RemoteFile, opts: Options, manual_hint: str) -> None:
    """Fetch ``url`` into ``part``, resuming, with retries and backoff."""
    failures = 0
    while True:
        before = _size(part)
        try:
            _attempt(url, part, rf, opts, manual_hint)
            return
        except _Retry as exc:
            failures = 0 if _size(part) > before else failures + 1
            if failures > opts.retries:
                raise _UrlFailed(f"{exc} ({failures} failed attempts in a row)") from None
            delay = min(30.0, opts.backoff * 2 ** max(0, failures - 1))
            log.info("%s: %s; retrying in %.1f s", url, exc, delay)
            time.sleep(delay)


@dataclass(frozen=True)
class _Fetched:
    path: Path
    sha256: str
    verified: bool  # True: matches a published checksum


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _move_aside(path: Path, suffix: str) -> Path:
    aside = path.with_name(path.name.removesuffix(".part") + suffix)
    os.replace(path, aside)
    return aside


def _check_hash(path: Path, rf: RemoteFile, where: str, echo: Callable[[str], None]) -> _Fetched:
    """Verify ``path`` against the published hash or, without one, against/into its sidecar."""
    actual = sha256_file(path)
    if rf.sha256 is not None:
        if actual != rf.sha256.lower():
            aside = _move_aside(path, ".sha256-mismatch")
            raise DownloadError(
                where,
                f"SHA-256 mismatch for {rf.name}: expected {rf.sha256}, got {actual}; "
                f"the file was moved aside to {aside} (a rerun downloads it again)",
            )
        return _Fetched(path, actual, True)
    sidecar = _sidecar(path.with_name(rf.name))
    if sidecar.is_file():
        recorded = (sidecar.read_text(encoding="utf-8").split() or [""])[0].lower()
        if recorded != actual:
            aside = _move_aside(path, ".sha256-mismatch")
            raise DownloadError(
                where,
                f"SHA-256 mismatch for {rf.name}: {sidecar} (recorded at its first download) has {recorded}, "
                f"the file has {actual}; the file was moved aside to {aside}. If the server's file "
                f"legitimately changed, delete {sidecar} and rerun",
            )
    else:
        atomic_write_text(sidecar, f"{actual}  {rf.name}\n")
        echo(f"SHA-256 of {rf.name}: {actual}  (no published checksum; stored in {sidecar})")
    return _Fetched(path, actual, False)


def _ensure_file(rf: RemoteFile, source: Source, dl: Path, opts: Options, echo: Callable[[str], None]) -> _Fetched:
    final = dl / rf.name
    urls = file_urls(rf, opts.url_base)
    if final.is_file():
        fetched = _check_hash(final, rf, str(final), echo)
        echo(f"{rf.name}: already downloaded ({'SHA-256 verified' if fetched.verified else 'unverified'})")
        return fetched
    part = dl / (rf.name + ".part")
    hint = f"download it in a browser from {source.page}, save it as {final} and rerun this command"
    errors: list[str] = []
    for url in urls:
        echo(f"{rf.name}: downloading {url}" + (f" (resuming at {_size(part)} bytes)" if part.exists() else ""))
        try:
            _download(url, part, rf, opts, hint)
        except _UrlFailed as exc:
            errors.append(f"{url}: {exc}")
            log.warning("%s: %s", url, exc)
            continue
        fetched = _check_hash(part, rf, url, echo)
        os.replace(part, final)
        if fetched.verified:
            echo(f"{rf.name}: SHA-256 verified")
        return _Fetched(final, fetched.sha256, fetched.verified)
    kept = f"; the partial download is kept in {part} and a rerun resumes it" if _size(part) else ""
    raise DownloadError(
        urls[0] if len(urls) == 1 else rf.name,
        "could not be downloaded: " + " | ".join(errors) + kept + f". Alternatively {hint}",
    )


# ---------------------------------------------------------------------------
# Extraction with path checks
# ---------------------------------------------------------------------------

_RESERVED = {DOWNLOADS_DIR, MARKER}


def _safe_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The path components of member ``name``; raises on absolute paths and ``..``."""
    if "\x00" in name:
        raise DataError(archive, f"refused member {name!r}: NUL in its name")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise DataError(archive, f"refused member {name!r}: absolute path")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if ".." in parts:
        raise DataError(archive, f"refused member {name!r}: '..' component (would escape the destination)")
    return parts


def _inside(dest: Path, parts: tuple[str, ...], archive: Path, name: str) -> Path:
    target = dest.joinpath(*parts)
    if not target.resolve().is_relative_to(dest.resolve()):
        raise DataError(archive, f"refused member {name!r}: resolves outside the destination")
    return target


class _ProgressReader:
    """A read-only file wrapper that reports bytes read to a tqdm bar."""

    def __init__(self, fh: BinaryIO, bar: tqdm):
        self._fh, self._bar = fh, bar

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._bar.update(len(data))
        return data


def _bar(total: int, desc: str, opts: Options) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=None if opts.progress is None else not opts.progress, leave=False)


def _extract_tar(archive: Path, dest: Path, opts: Options) -> None:
    try:
        with open(archive, "rb") as raw, _bar(_size(archive), f"extract {archive.name}", opts) as bar:
            # Stream mode: one pass over the (possibly large) compressed file;
            # each member is checked before it is written.
            with tarfile.open(fileobj=_ProgressReader(raw, bar), mode="r|*") as tf:
                for member in tf:
                    parts = _safe_parts(archive, member.name)
                    if member.issym() or member.islnk():
                        kind = "symbolic" if member.issym() else "hard"
                        raise DataError(archive, f"refused member {member.name!r}: {kind} link to "
                                                 f"{member.linkname!r} (links are not extracted)")
                    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
                        raise DataError(archive, f"refused member {member.name!r}: device or special file")
                    if not (member.isfile() or member.isdir()):
                        raise DataError(archive, f"refused member {member.name!r}: unsupported type {member.type!r}")
                    if not parts:
                        continue  # the archive's own root folder ("./")
                    _inside(dest, parts, archive, member.name)
                    if _HAS_TAR_FILTER:
                        tf.extract(member, dest, filter="data")
                    else:  # pragma: no cover - old Python patch releases
                        tf.extract(member, dest, set_attrs=False)
    except DataError:
        raise
    except _TarFilterError as exc:  # pragma: no cover - our checks run first
        raise DataError(archive, f"refused member: {exc}") from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise DataError(archive, f"corrupt or truncated archive ({exc or type(exc).__name__})") from exc
    except OSError as exc:
        raise DataError(archive, f"cannot extract ({exc})") from exc


def _extract_zip(archive: Path, dest: Path, opts: Options) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(archive, f"corrupt or truncated archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        plan = []
        for info in infos:  # check every member before writing anything
            parts = _safe_parts(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DataError(archive, f"refused member {info.filename!r}: symbolic link (links are not extracted)")
            if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise DataError(archive, f"refused member {info.filename!r}: device or special file")
            if parts:
                plan.append((info, parts))
        try:
            with _bar(sum(i.file_size for i in infos), f"extract {archive.name}", opts) as bar:
                for info, parts in plan:
                    target = _inside(dest, parts, archive, info.filename)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        for block in iter(lambda: src.read(_CHUNK), b""):
                            out.write(block)
                            bar.update(len(block))
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            raise DataError(archive, f"corrupt or truncated archive ({exc})") from exc
        except OSError as exc:
            raise DataError(archive, f"cannot extract ({exc})") from exc


def _replace(src: Path, dst: Path, scratch: Path) -> None:
    """Move ``src`` onto ``dst`` by renames; an existing ``dst`` is swapped out first."""
    if dst.exists() or dst.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=scratch)) / dst.name
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old.parent, ignore_errors=True)
    else:
        os.rename(src, dst)


def _install(fetched: _Fetched, rf: RemoteFile, to: Path, dl: Path, opts: Options, echo: Callable[[str], None]) -> None:
    """Unpack (or copy) one downloaded file into ``to/rf.into`` through a staging folder."""
    staging = Path(tempfile.mkdtemp(prefix=f".extract-{rf.name}-", dir=dl))
    os.chmod(staging, 0o755)  # mkdtemp makes it 0700; it may become DIR/<into> itself
    try:
        if rf.unpack == "tar":
            _extract_tar(fetched.path, staging, opts)
        elif rf.unpack == "zip":
            _extract_zip(fetched.path, staging, opts)
        elif rf.unpack is None:
            shutil.copyfile(fetched.path, staging / rf.name)
        else:  # pragma: no cover - catalogue error
            raise JasrbenchError(f"{rf.name}: unknown unpack method {rf.unpack!r}")
        macos = staging / "__MACOSX"  # resource forks zipped on a Mac: not data
        if macos.is_dir():
            shutil.rmtree(macos)
        content = staging
        entries = list(staging.iterdir())
        if rf.strip and len(entries) == 1 and entries[0].name == rf.strip and entries[0].is_dir():
            content = entries[0]
        # The unit of replacement is a top-level entry of `to`: DIR/<into> as a
        # whole, or each top-level entry of the archive; each is one rename.
        if rf.into:
            dest = to / rf.into
            dest.parent.mkdir(parents=True, exist_ok=True)
            _replace(content, dest, dl)
        else:
            dest = to
            names = sorted(e.name for e in content.iterdir())
            for name in names:
                if name in _RESERVED:
                    raise DataError(fetched.path, f"refused member {name!r}: reserved name in {to}")
            for name in names:
                _replace(content / name, to / name, dl)
        if rf.unpack:
            echo(f"{rf.name}: extracted into {dest}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------
# Layout checks
# ---------------------------------------------------------------------------

W300_SUBSETS = ("lfpw/trainset", "lfpw/testset", "helen/trainset", "helen/testset", "afw", "ibug")
_IMAGE_EXTS = {".jpg", ".jpeg", ".png"}


def check_300w(root: Path) -> list[str]:
    """300W's official layout: each subset folder with images beside ``.pts`` files."""
    missing = [s for s in W300_SUBSETS if not (root / s).is_dir()]
    if missing:
        raise DataError(root, f"not 300W's official layout: missing folder(s) {', '.join(missing)}")
    lines = []
    for subset in W300_SUBSETS:
        files = [p for p in (root / subset).iterdir() if p.is_file()]
        pts = {p.stem for p in files if p.suffix.lower() == ".pts"}
        images = {p.stem for p in files if p.suffix.lower() in _IMAGE_EXTS}
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
# The whole command
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """One download per destination at a time (an OS lock: released if the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JasrbenchError(f"another `jasrbench download` is writing into {folder.parent}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _marker_matches(to: Path, source: Source) -> bool:
    try:
        marker = json.loads((to / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("dataset") != source.dataset or marker.get("source") != source.name:
        return False
    files = marker.get("files")
    if not isinstance(files, dict) or set(files) != {rf.name for rf in source.files}:
        return False
    return all(rf.sha256 is None or files[rf.name] == rf.sha256 for rf in source.files)


def fetch(source: Source, to: str | Path, opts: Options | None = None,
          echo: Callable[[str], None] = print) -> list[str]:
    """Download, verify and extract ``source`` into ``to``; returns the layout summary lines."""
    opts = opts or Options()
    to = Path(to).expanduser().absolute()
    to.mkdir(parents=True, exist_ok=True)
    dl = to / DOWNLOADS_DIR
    dl.mkdir(exist_ok=True)
    check = LAYOUT_CHECKS[source.dataset]
    with _lock(dl):
        if _marker_matches(to, source):
            try:
                lines = check(to)
            except DataError as exc:
                echo(f"{to} was completed before but fails its layout check now ({exc}); redoing")
            else:
                echo(f"{source.dataset} ({source.name}) is already downloaded and extracted in {to}")
                return lines
        fetched = [_ensure_file(rf, source, dl, opts, echo) for rf in source.files]
        unverified = [(rf, f) for rf, f in zip(source.files, fetched) if not f.verified]
        if unverified and not opts.accept_unverified:
            listing = "; ".join(f"{f.path.name} sha256 {f.sha256}" for _, f in unverified)
            raise JasrbenchError(
                f"no published SHA-256 exists for {len(unverified)} file(s) of {source.dataset} ({listing}; "
                f"stored beside them as .sha256). Compare with a trusted copy if you can, then rerun with "
                f"--accept-unverified (the files are kept; nothing is downloaded again)"
            )
        for rf, f in zip(source.files, fetched):
            _install(f, rf, to, dl, opts, echo)
        lines = check(to)
        atomic_write_text(to / MARKER, to_json({
            "dataset": source.dataset,
            "source": source.name,
            "files": {rf.name: f.sha256 for rf, f in zip(source.files, fetched)},
            "verified": {rf.name: f.verified for rf, f in zip(source.files, fetched)},
        }))
        if opts.remove_archives:
            for f in fetched:
                f.path.unlink(missing_ok=True)
                _sidecar(f.path).unlink(missing_ok=True)
    return lines


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Download a public dataset (300W, LFW) into DIR: resumable, SHA-256 checked, archives "
        "extracted with path checks, layout verified. HELEN and AFLW must be obtained by hand "
        "(the command says how). See datasets/raw/README.md."
    )
    parser.add_argument("dataset", nargs="?", metavar="DATASET", type=str.lower,
                        help="300w | lfw (helen, aflw: prints how to obtain them)")
    parser.add_argument("--to", type=Path, default=None, metavar="DIR",
                        help="destination folder (default: datasets/raw/DATASET)")
    parser.add_argument("--source", default=None,
                        help="where from: 300w: ibug (official, default) or dlib; lfw: official")
    parser.add_argument("--url-base", default=os.environ.get(MIRROR_ENV) or None, metavar="URL",
                        help=f"fetch every file as URL/FILENAME from a mirror (default: ${MIRROR_ENV}); checksums still apply")
    parser.add_argument("--accept-unverified", action="store_true",
                        help="continue with files that have no published SHA-256 (their hash is printed and stored)")
    parser.add_argument("--remove-archives", action="store_true",
                        help="delete the downloaded archives after a successful extraction")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="network timeout in seconds")
    parser.add_argument("--retries", type=int, default=5, help="retries of a failing transfer (with backoff)")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")


def _print_catalogue() -> None:
    for dataset, sources in CATALOGUE.items():
        for name, src in sources.items():
            default = " (default)" if DEFAULT_SOURCE[dataset] == name else ""
            print(f"{dataset} --source {name}{default}: {src.description}\n  page: {src.page}\n  terms: {src.terms}")
            for rf in src.files:
                print(f"  {rf.name}: {' , '.join(rf.urls)}")
                print(f"    sha256: {rf.sha256 or 'none published'}" + (f", {rf.size} bytes" if rf.size else ""))
                print(f"    {rf.checksum_source}")
    for dataset, text in MANUAL.items():
        print(f"{dataset}: {text}")


def run(args: argparse.Namespace) -> int:
    if args.list:
        _print_catalogue()
        return 0
    if not args.dataset:
        raise JasrbenchError(f"name a DATASET ({', '.join(sorted([*CATALOGUE, *MANUAL]))}) or use --list")
    source = get_source(args.dataset, args.source)
    to = args.to if args.to is not None else Path("datasets") / "raw" / source.dataset
    opts = Options(timeout=args.timeout, retries=args.retries, accept_unverified=args.accept_unverified,
                   url_base=args.url_base, remove_archives=args.remove_archives)
    lines = fetch(source, to, opts)
    print(f"{source.dataset} is in {Path(to).absolute()}:")
    for line in lines:
        print(f"  {line}")
    print(f"next: jasrbench prepare {source.dataset} --raw {to} --out datasets/prepared/{source.dataset}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["download", *sys.argv[1:]]))
