"""Fetch a catalogue ``Source`` into a folder: resumable, SHA-256-checked, safely extracted.

Generic: it knows no dataset (``catalogue.py`` says what to fetch and how to
check the result). pooch verifies each fresh download against its published
SHA-256 and moves it into place; the transfer itself is ``ResumingDownloader``,
a pooch downloader, because pooch restarts an interrupted download from zero
while a rerun here resumes it with an HTTP ``Range`` request. Archives go
through ``extract.py``, which refuses unsafe members. Behaviour in detail:
datasets/raw/README.md.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pooch
from tqdm import tqdm

from .. import __version__
from ..errors import DataError, JasrbenchError
from ..io import atomic_write_text, to_json
from .catalogue import RemoteFile, Source, file_urls
from .extract import extract_tar, extract_zip

log = logging.getLogger(__name__)

DOWNLOADS_DIR = ".downloads"
MARKER = ".jasrbench-download.json"
_CHUNK = 1 << 20
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(DataError):
    """A problem with a remote file, named by its URL (``DataError`` would read it as a path)."""

    def __init__(self, url: str, problem: str):
        JasrbenchError.__init__(self, f"{url}: {problem}")
        self.path, self.url, self.problem = None, url, problem


@dataclass
class Options:
    timeout: float = 60.0  # seconds without data before an attempt fails
    retries: int = 5  # failed attempts in a row (without progress) before giving up on a URL
    backoff: float = 1.0  # first retry delay, doubled each time (capped at 30 s)
    accept_unverified: bool = False
    url_base: str | None = None
    remove_archives: bool = False
    progress: bool | None = None  # None: bars only on a terminal


# ---------------------------------------------------------------------------
# The transfer: HTTP (or file://) with resume, retries and backoff
# ---------------------------------------------------------------------------


class _UrlFailed(Exception):
    """This URL cannot deliver the file (now): try the next one."""


class _Retry(Exception):
    """A transient failure: retry the same URL (resuming)."""


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


class ResumingDownloader:
    """A pooch downloader that keeps the transfer in ``part`` so a rerun resumes it.

    pooch hands a fresh temporary file to each download; this one fills
    ``part`` (``Range`` requests, retries with backoff, ``file://`` mirrors)
    and links it to that file when complete. pooch then checks the hash and
    deletes its temporary file on a mismatch, so ``part`` still holds the bytes
    to move aside for inspection. A URL that cannot deliver raises ``_UrlFailed``.
    """

    def __init__(self, part: Path, rf: RemoteFile, opts: Options, manual_hint: str):
        self.part, self.rf, self.opts, self.manual_hint = part, rf, opts, manual_hint
        self.complete = False

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False) -> None:
        if check_only:
            raise NotImplementedError("ResumingDownloader does not check availability")
        _download(url, self.part, self.rf, self.opts, self.manual_hint)
        self.complete = True
        if hasattr(output_file, "write"):
            with open(self.part, "rb") as src:
                shutil.copyfileobj(src, output_file, _CHUNK)
            return
        out = Path(output_file)
        out.unlink(missing_ok=True)
        try:
            os.link(self.part, out)
        except OSError:  # a file system without hard links
            shutil.copyfile(self.part, out)


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
        echo(f"{rf.name}: downloading {url}" + (f" (resuming at {_size(part)} bytes)" if part.exists() else ""))
        downloader = ResumingDownloader(part, rf, opts, hint)
        try:
            with _quiet_pooch():
                pooch.retrieve(url, known_hash=rf.sha256, fname=rf.name, path=dl, downloader=downloader)
        except _UrlFailed as exc:
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
    kept = f"; the partial download is kept in {part} and a rerun resumes it" if _size(part) else ""
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
