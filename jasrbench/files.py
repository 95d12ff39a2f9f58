"""Atomic, deterministic output helpers shared by every stage.

Every file the suite writes goes through :func:`atomic_path`: the content is
written to a temporary file in the destination's folder and renamed over the
destination only when complete, so a killed stage never leaves a half-written
output (DESIGN §6). Array bundles are written by :func:`save_arrays`, a zip of
``.npy`` members with fixed timestamps, so identical inputs give byte-identical
files (``numpy.savez`` stamps the current time into the archive).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _default_mode() -> int:
    """The mode a plainly created file gets (0666 minus the umask); mkstemp would give 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched. The temporary
    name is ``.NAME.XXXX.tmp`` (``.NAME.XXXX.tmp.SUFFIX`` when a writer needs the extension,
    e.g. matplotlib): ``.gitignore`` and ``.dvcignore`` cover both, so what a hard kill leaves
    in a stage's output folder is neither committed nor cached by DVC.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix or ''}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _default_mode())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """Stable JSON: sorted keys, 2-space indent, NaN/inf refused (they are bugs here)."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, to_json(obj))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON ({exc})") from exc


def save_arrays(path: str | Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    """Write named arrays plus a JSON metadata member as one deterministic zip, atomically.

    Members are stored uncompressed (image arrays barely compress and loading
    stays fast); ``np.load`` reads the result like any ``.npz``.
    """
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())
            info = zipfile.ZipInfo("metadata.json", date_time=_FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, to_json(dict(metadata)))


def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_arrays`: (arrays, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with zipfile.ZipFile(path) as zf:
            metadata = json.loads(zf.read("metadata.json"))
            arrays = {}
            for name in zf.namelist():
                if name.endswith(".npy"):
                    with zf.open(name) as fh:
                        arrays[name[:-4]] = np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise DataError(path, f"not a readable jasrbench array file ({exc})") from exc
    return arrays, metadata


def require_finite(values: Mapping[str, float], where: str | Path) -> None:
    """Raise if any value is NaN/inf: such a metric is a bug, never a result."""
    bad = {k: v for k, v in values.items() if not math.isfinite(float(v))}
    if bad:
        raise DataError(where, f"non-finite values: {bad}")


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex (cached per path, size and modification time)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
