"""The ``srcnn`` upsampler: bicubic interpolation refined by a trained SRCNN (paper appendix, Table 4).

Used as ``lowres:upsample=srcnn,weights=PATH``, where ``PATH`` is a ``.safetensors`` file written by
``cqdkit sr-train`` (:func:`cqdkit.train.superres.train_srcnn`). The small image is upsampled
bicubically, SRCNN (:mod:`cqdkit.models.srcnn`) refines its luminance, and the bicubic colour is kept.

Weights are read with safetensors only (nothing is unpickled), checked against the architecture, and
loaded once per process and file: the upsampler itself holds just the path, so a pickled PairMaker
(DataLoader workers) stays small and each worker loads the file on first use. It runs on the CPU
without gradients and leaves torch's thread settings alone (DataLoader workers use one thread).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import SpecError
from ..models.srcnn import SRCNN, super_resolve


def make_srcnn(weights: str | None = None) -> SrcnnUpsampler:
    """The upsampler factory registered as ``srcnn``; ``weights`` is required.

    Raises:
        SpecError: no weights, or a file that is missing, unreadable or not SRCNN 9-5-5 weights.
    """
    if weights is None:
        raise SpecError(
            "lowres: upsample=srcnn needs trained weights: add weights=PATH to the spec "
            "(train them with `cqdkit sr-train --out PATH.safetensors`)"
        )
    upsampler = SrcnnUpsampler(weights)
    upsampler.model()  # fail on a bad file now, when the spec is compiled
    return upsampler


@dataclass(frozen=True)
class SrcnnUpsampler:
    """``upsampler(small, size)``: ``h x w x 3`` uint8 to ``size x size x 3`` uint8, SRCNN-refined."""

    weights: str

    def model(self) -> SRCNN:
        """The network of :attr:`weights`, loaded once per process (and again if the file changes)."""
        return load_srcnn(self.weights)

    def __call__(self, small: np.ndarray, size: int) -> np.ndarray:
        bicubic = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        images = torch.from_numpy(np.ascontiguousarray(bicubic)).permute(2, 0, 1).unsqueeze(0)
        return super_resolve(self.model(), images)[0].permute(1, 2, 0).numpy()


def load_srcnn(path: str | os.PathLike[str]) -> SRCNN:
    """The SRCNN stored in the safetensors file ``path``, in eval mode on the CPU (cached per file).

    Raises:
        SpecError: the file is missing, not a safetensors file, or holds other tensors than SRCNN 9-5-5's.
    """
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError:
        raise SpecError(f"lowres: srcnn weights file {str(path)!r} does not exist") from None
    if not resolved.is_file():
        raise SpecError(f"lowres: srcnn weights {str(path)!r} is not a file")
    return _load(str(resolved), stat.st_mtime_ns, stat.st_size, str(path))


@lru_cache(maxsize=8)
def _load(resolved: str, mtime_ns: int, size: int, shown: str) -> SRCNN:
    """Read and check one file version (the modification time and size are part of the cache key)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = f"lowres: srcnn weights file {shown!r}"
    try:
        state = load_file(resolved, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise SpecError(f"{where} is not a readable safetensors file ({error})") from None
    model = SRCNN()
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    if found != expected:
        missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
        problems = [f"{k} {found[k]} instead of {expected[k]}" for k in sorted(expected.keys() & found.keys())
                    if found[k] != expected[k]]
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        raise SpecError(f"{where} does not hold SRCNN 9-5-5 weights: {'; '.join(problems)}")
    if not all(torch.isfinite(value).all() for value in state.values()):
        raise SpecError(f"{where} holds NaN or infinite weights")
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model.eval()
