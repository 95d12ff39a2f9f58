"""Safe extraction of downloaded archives: every member is checked before anything is written.

Refused, with an error naming the archive and the member: absolute paths,
``..`` components, symbolic and hard links, device files. pooch's ``Untar``
and ``Unzip`` are not used: on Python < 3.12 the first writes absolute paths
and links as they are; the second renames hostile members and writes links
as plain files instead of refusing them.
"""

from __future__ import annotations

import gzip
import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ..errors import DataError

_CHUNK = 1 << 20
_HAS_TAR_FILTER = hasattr(tarfile, "data_filter")  # Python 3.8.17+, 3.9.17+, 3.10.12+, 3.11.4+
_TarFilterError = getattr(tarfile, "FilterError", ())


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


def _bar(total: int, desc: str, progress: bool | None) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=None if progress is None else not progress, leave=False)


def extract_tar(archive: Path, dest: Path, progress: bool | None = None) -> None:
    """Extract a tar archive (any compression) into ``dest``, refusing unsafe members; ``DataError`` names it."""
    try:
        with open(archive, "rb") as raw, _bar(archive.stat().st_size, f"extract {archive.name}", progress) as bar:
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


def extract_zip(archive: Path, dest: Path, progress: bool | None = None) -> None:
    """Extract a zip archive into ``dest`` after checking every member; ``DataError`` names it."""
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
            with _bar(sum(i.file_size for i in infos), f"extract {archive.name}", progress) as bar:
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
