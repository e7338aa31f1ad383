"""Multi-process training under ``torchrun`` (PyTorch DistributedDataParallel).

``torchrun --nproc_per_node=N -m cqdkit run ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`setup` then joins the process group (NCCL on GPUs, gloo on CPUs) and picks this process's GPU.
Each process sees ``batch_size / N`` samples per step of the same global permutation, so the global
batches, and the result, match a single process (up to floating-point summation order).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process (it sets these variables, also for a single process)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextmanager
def setup(device: str) -> Iterator[str]:
    """Join the process group when launched by torchrun; yields the device name for this process."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield device
        return
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield f"cuda:{local_rank}" if use_cuda else "cpu"
    finally:
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process writes files and prints results (rank 0, or the only process)."""
    return world()[0] == 0


def barrier() -> None:
    """Wait for every process (nothing without torch.distributed)."""
    if world()[1] > 1:
        dist.barrier()
