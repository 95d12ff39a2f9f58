"""Fetch a catalogue ``Source`` into a folder: resumable, SHA-256-checked, safely extracted.

Generic: it knows no dataset (``catalogue.py`` says what to fetch and how to
check the result). Per file: ``pooch.retrieve`` checks a fresh download
against its published SHA-256 and moves it into place, the transfer being
``downloader.ResumingDownloader`` (pooch itself cannot resume); files without a
published hash get theirs recorded beside them. Archives are unpacked by
``extract.py``, then moved into place by renames; one run per folder at a time.
Behaviour in detail: datasets/raw/README.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pooch

from ..errors import DataError, JasrbenchError
from ..files import atomic_write_text, to_json
from .catalogue import RemoteFile, Source, file_urls
from .downloader import ResumingDownloader, UrlFailed
from .extract import extract_tar, extract_zip

log = logging.getLogger(__name__)

DOWNLOADS_DIR = ".downloads"
MARKER = ".jasrbench-download.json"


class DownloadError(DataError):
    """A problem with a remote file, named by its URL (``DataError`` would read it as a path)."""

    def __init__(self, url: str, problem: str):
        JasrbenchError.__init__(self, f"{url}: {problem}")
        self.path, self.url, self.problem = None, url, problem


@dataclass
class Options:
    """How ``fetch`` behaves (the command line's options)."""

    timeout: float = 60.0  # seconds without data before an attempt fails
    retries: int = 5  # failed attempts in a row (without progress) before giving up on a URL
    backoff: float = 1.0  # first retry delay, doubled each time (capped at 30 s)
    accept_unverified: bool = False
    url_base: str | None = None
    remove_archives: bool = False
    progress: bool | None = None  # None: bars only on a terminal


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs each download and tells to pass ``known_hash`` to it: our own messages say that."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------
# One file: reuse, download, verify
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fetched:
    path: Path
    sha256: str
    verified: bool  # True: matches a published checksum


def sha256_file(path: Path) -> str:
    return pooch.file_hash(str(path), alg="sha256")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _move_aside(path: Path, suffix: str) -> Path:
    aside = path.with_name(path.name.removesuffix(".part") + suffix)
    os.replace(path, aside)
    return aside


def _mismatch(path: Path, rf: RemoteFile, where: str, actual: str) -> DownloadError:
    aside = _move_aside(path, ".sha256-mismatch")
    return DownloadError(
        where,
        f"SHA-256 mismatch for {rf.name}: expected {rf.sha256}, got {actual}; "
        f"the file was moved aside to {aside} (a rerun downloads it again)",
    )


def _check_hash(path: Path, rf: RemoteFile, where: str, echo: Callable[[str], None]) -> _Fetched:
    """Verify ``path`` against the published hash or, without one, against/into its sidecar."""
    actual = sha256_file(path)
    if rf.sha256 is not None:
        if actual != rf.sha256.lower():
            raise _mismatch(path, rf, where, actual)
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
    """``dl/NAME``, downloaded unless already there, checked against its hash."""
    final = dl / rf.name
    part = dl / (rf.name + ".part")
    urls = file_urls(rf, opts.url_base)
    if final.is_file():
        part.unlink(missing_ok=True)  # left by a run stopped right after pooch moved the file into place
        fetched = _check_hash(final, rf, str(final), echo)
        echo(f"{rf.name}: already downloaded ({'SHA-256 verified' if fetched.verified else 'unverified'})")
        return fetched
    hint = f"download it in a browser from {source.page}, save it as {final} and rerun this command"
    errors: list[str] = []
    for url in urls:
        echo(f"{rf.name}: downloading {url}" + (f" (resuming at {part.stat().st_size} bytes)" if part.exists() else ""))
        downloader = ResumingDownloader(part, rf, hint, timeout=opts.timeout, retries=opts.retries,
                                        backoff=opts.backoff, progress=opts.progress)
        try:
            with _quiet_pooch():
                pooch.retrieve(url, known_hash=rf.sha256, fname=rf.name, path=dl, downloader=downloader)
        except UrlFailed as exc:
            errors.append(f"{url}: {exc}")
            log.warning("%s: %s", url, exc)
            continue
        except ValueError:  # pooch's hash mismatch (it has deleted its copy; `part` holds the bytes)
            if not downloader.complete:
                raise
            raise _mismatch(part, rf, url, sha256_file(part)) from None
        part.unlink(missing_ok=True)  # the other name of the verified file
        if rf.sha256 is not None:
            echo(f"{rf.name}: SHA-256 verified")
            return _Fetched(final, rf.sha256.lower(), True)
        return _check_hash(final, rf, url, echo)
    kept = ""
    if part.exists() and part.stat().st_size:
        kept = f"; the partial download is kept in {part} and a rerun resumes it"
    raise DownloadError(
        urls[0] if len(urls) == 1 else rf.name,
        "could not be downloaded: " + " | ".join(errors) + kept + f". Alternatively {hint}",
    )


# ---------------------------------------------------------------------------
# Into place: extract (or copy) through a staging folder, then rename
# ---------------------------------------------------------------------------

_RESERVED = {DOWNLOADS_DIR, MARKER}


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
            extract_tar(fetched.path, staging, opts.progress)
        elif rf.unpack == "zip":
            extract_zip(fetched.path, staging, opts.progress)
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
# A whole source
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
    with _lock(dl):
        if _marker_matches(to, source):
            try:
                lines = source.check_layout(to)
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
        lines = source.check_layout(to)
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
