"""Image decoding with deliberate colour handling and named errors.

Every image enters the suite through :func:`load_rgb`: it is fully decoded
(truncated files fail here, not later), and converted to 8-bit RGB on purpose
by mode — grayscale is replicated to three channels, RGBA is composited on
black (the colour of out-of-photo regions in 300W crops), CMYK goes through
PIL's ICC-free CMYK→RGB, 16-bit images are scaled to 8 bits (not clipped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _sixteen_bit_to_rgb(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    arr = arr.astype(np.float64) / 257.0  # 65535 → 255 exactly
    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` → H×W×3 uint8 RGB; :class:`DataError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                if mode == "I":
                    arr = np.asarray(img)
                    if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
                        raise DataError(path, f"32-bit integer image with values outside 0–65535 (mode {mode})")
                    return _sixteen_bit_to_rgb(Image.fromarray(arr.astype(np.uint16)))
                return _sixteen_bit_to_rgb(img)
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                return np.asarray(Image.alpha_composite(black, rgba).convert("RGB"))
            if mode in ("RGB", "L", "P", "CMYK", "YCbCr", "1", "LAB", "HSV"):
                return np.asarray(img.convert("RGB"))
            if mode == "F":
                raise DataError(path, "floating-point image: no defined 8-bit range")
            raise DataError(path, f"unsupported image mode {mode}")
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (corrupt or unknown format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"corrupt or truncated image ({exc})") from exc
