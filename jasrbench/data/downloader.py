"""A pooch downloader that resumes: HTTP ``Range`` requests, retries with backoff, mirrors.

pooch's own HTTP downloader starts every download from zero into a fresh
temporary file, so an interrupted large archive would be fetched again in full.
This one keeps the transfer in a stable ``NAME.part`` beside the destination,
resumes it on the next attempt or run, and hands it to pooch once complete;
pooch then checks the SHA-256 and moves the file into place. Plain ``urllib``
(no extra client): it also reads ``file://`` URLs, for local mirrors.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..errors import DataError
from .catalogue import RemoteFile

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


class UrlFailed(Exception):
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


class ResumingDownloader:
    """A pooch downloader that keeps the transfer in ``part`` so a rerun resumes it.

    pooch hands a fresh temporary file to each download; this one fills
    ``part`` (``Range`` requests, retries with backoff, ``file://`` mirrors)
    and links it to that file when complete. pooch then checks the hash and
    deletes its temporary file on a mismatch, so ``part`` still holds the bytes
    to move aside for inspection. A URL that cannot deliver raises ``UrlFailed``.
    """

    def __init__(self, part: Path, rf: RemoteFile, manual_hint: str = "", *, timeout: float = 60.0,
                 retries: int = 5, backoff: float = 1.0, progress: bool | None = None):
        self.part, self.rf, self.manual_hint = part, rf, manual_hint
        self.timeout = timeout  # seconds without data before an attempt fails
        self.retries = retries  # failed attempts in a row (without progress) before giving up on a URL
        self.backoff = backoff  # first retry delay, doubled each time (capped at 30 s)
        self.progress = progress  # None: a bar only on a terminal
        self.complete = False

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False) -> None:
        if check_only:
            raise NotImplementedError("ResumingDownloader does not check availability")
        self.download(url)
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

    def _attempt(self, url: str) -> None:
        """One HTTP request: append to (206) or rewrite (200) ``self.part`` until the body ends."""
        have = _size(self.part)
        if self.rf.size is not None and have > self.rf.size:
            self.part.unlink()
            have = 0
        headers = {"User-Agent": f"jasrbench/{__version__}", "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            resp = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                _, total = _content_range(exc.headers.get("Content-Range"))
                if total == have:
                    return  # the part file already holds the whole file
                self.part.unlink()
                raise _Retry("server refused the resume range; restarting from the beginning") from None
            if exc.code in _TRANSIENT_HTTP:
                raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
            raise UrlFailed(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
                raise UrlFailed(f"cannot connect ({reason})") from None
            raise _Retry(f"connection failed ({reason})") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retry(f"connection failed ({exc!r})") from None

        with resp:
            ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype == "text/html" and not self.rf.name.lower().endswith((".html", ".htm")):
                raise UrlFailed(
                    f"answered with an HTML page instead of {self.rf.name} "
                    f"(a terms-of-use or registration form?); {self.manual_hint}"
                )
            if resp.status == 206:
                start, total = _content_range(resp.headers.get("Content-Range"))
                if start != have:
                    self.part.unlink(missing_ok=True)
                    raise _Retry(f"server sent bytes from {start}, expected {have}; restarting from the beginning")
                mode = "ab"
            elif resp.status in (200, None):  # None: a file:// URL (a local mirror)
                if have:
                    log.info("%s: the server ignored the Range request; restarting %s from the beginning",
                             url, self.rf.name)
                have, mode = 0, "wb"
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            else:
                raise UrlFailed(f"unexpected HTTP status {resp.status}")
            if self.rf.size is not None and total is not None and total != self.rf.size:
                raise UrlFailed(f"server announces {total} bytes, the catalogue expects {self.rf.size}")

            try:
                fh = open(self.part, mode)
            except OSError as exc:
                raise DataError(self.part, f"cannot write ({exc})") from exc
            with fh, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=self.rf.name, disable=None if self.progress is None else not self.progress, leave=False,
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
                        raise DataError(self.part, f"cannot write ({exc})") from exc
                    bar.update(len(chunk))
                got = fh.tell()
        if total is not None and got < total:
            raise _Retry(f"connection closed after {got} of {total} bytes")
        if total is not None and got > total:
            self.part.unlink()
            raise _Retry(f"received {got} bytes, more than the announced {total}; restarting")

    def download(self, url: str) -> None:
        """Fetch ``url`` into ``self.part``, resuming, with retries and backoff."""
        failures = 0
        while True:
            before = _size(self.part)
            try:
                self._attempt(url)
                return
            except _Retry as exc:
                failures = 0 if _size(self.part) > before else failures + 1
                if failures > self.retries:
                    raise UrlFailed(f"{exc} ({failures} failed attempts in a row)") from None
                delay = min(30.0, self.backoff * 2 ** max(0, failures - 1))
                log.info("%s: %s; retrying in %.1f s", url, exc, delay)
                time.sleep(delay)
