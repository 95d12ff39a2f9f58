"""Does this CPU's oneDNN give a 3×3 convolution the same weight gradient with 1 and 2 threads?

On an AVX2 CPU it does, and ``JASRBENCH_FIXED_ORDER_GRADS`` makes whole training steps of the
models built from such convolutions thread-count independent. On an AVX512 CPU (seen on a Xeon
with AMX) oneDNN's 3×3 weight gradient itself follows the thread count, so that promise cannot
hold there; the tests that check it say so (xfail) instead of failing on the machine.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from jasrbench import runtime


@functools.cache
def conv_weight_grad_follows_threads() -> str | None:
    """``None`` when 1 and 2 threads give the same bits; otherwise why not, naming the CPU capability."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 16, 128, 128, generator=gen)  # smoke widths, 128² faces, a batch of 8
    w = torch.randn(16, 16, 3, 3, generator=gen) * 0.1
    before, grads = torch.get_num_threads(), []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            weight = w.clone().requires_grad_()
            y = F.conv2d(x, weight, padding=1)
            y.backward(torch.ones_like(y))
            grads.append(weight.grad)
    finally:
        torch.set_num_threads(before)
    if torch.equal(*grads):
        return None
    return (f"oneDNN's 3×3 convolution weight gradient depends on the thread count on this CPU "
            f"({runtime.cpu_capability()})")
