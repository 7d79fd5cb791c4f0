"""The setup of every process that runs bench runs: a local pool's worker, a Ray task or trial."""

from __future__ import annotations

import os
import warnings

import torch

from ..runtime import keep_freed_memory


def setup_worker(threads: int, *, hide_gpus: bool = False) -> None:
    """Prepare this process for runs: ``threads`` torch threads, freed memory kept for reuse,
    third-party deprecation notices silenced, and with ``hide_gpus`` no GPU visible.

    Args:
        threads: Torch intra-op threads (at least 1).
        hide_gpus: Hide every GPU (``CUDA_VISIBLE_DEVICES=""``): a Ray task that asked for no GPU
            must not land on GPU 0 beside the GPU runs (Ray no longer hides them). Must run before
            CUDA is first used in the process.
    """
    if hide_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    torch.set_num_threads(max(1, threads))
    keep_freed_memory()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
