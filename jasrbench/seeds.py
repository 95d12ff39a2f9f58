"""Seeded random draws that do not depend on the machine: one CPU generator per tuple of integers."""

from __future__ import annotations

import hashlib
import json

import torch


def generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers (seed, epoch, step, …)."""
    digest = hashlib.sha256(json.dumps(list(keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
