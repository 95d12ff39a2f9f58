"""Sums whose rounding depends on the summed values alone.

Library reductions split their work by the tensor's total size and the
number of threads, so the same values summed inside a larger batch, or with
another thread count, can round differently. Every number the suite writes
(per-image metrics, logged losses) must be a function of its inputs alone:
these folds use only elementwise additions in an order fixed by the shape of
the summed part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fixed_order_sum(values: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Sum over the last ``dims`` dimensions by pairwise folds (zero-padded to a power of two; adding 0 is exact)."""
    if dims < 1 or dims > values.dim():
        raise ValueError(f"cannot sum the last {dims} dims of a {values.dim()}-D tensor")
    values = values.reshape(*values.shape[: values.dim() - dims], -1)
    size = values.shape[-1]
    width = 1 << max(size - 1, 0).bit_length()
    if width != size:
        values = F.pad(values, (0, width - size))
    while values.shape[-1] > 1:
        half = values.shape[-1] // 2
        values = values[..., :half] + values[..., half:]
    return values[..., 0]


def fixed_order_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of all elements (a 0-d tensor) by :func:`fixed_order_sum`."""
    return fixed_order_sum(values, values.dim()) / values.numel() if values.dim() else values
