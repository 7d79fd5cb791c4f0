"""Process and module state helpers: seeded blocks, evaluation mode, the allocator setting."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .clib import libc


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's random generators seeded, restoring their state afterwards.

    Args:
        seed: The seed of the block.
        device: Also seed (and restore) this CUDA device's generator.

    Returns:
        A context manager.

    Examples:
        >>> from conceptlab.training import seeded
        >>> with seeded(0):
        ...     a = torch.rand(2)
        >>> with seeded(0):
        ...     b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """
    cuda = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in evaluation mode for the block, then restore its training flag."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def keep_freed_memory() -> None:
    """Ask glibc to reuse freed blocks instead of returning them to the kernel after every step.

    With its default thresholds each large activation tensor is mapped anew and faulted in page
    by page, which showed up as a large share of system time in training and TCAV runs. No
    effect outside glibc.
    """
    if platform.system() != "Linux":
        return
    c_library = libc()
    if hasattr(c_library, "mallopt"):
        m_trim_threshold, m_mmap_threshold = -1, -3
        c_library.mallopt(m_mmap_threshold, 256 << 20)
        c_library.mallopt(m_trim_threshold, 512 << 20)
