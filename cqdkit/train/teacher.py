"""The frozen teacher f of Equation 1, and its logits computed once and cached.

The teacher never trains: :class:`FrozenTeacher` keeps the wrapped model in eval mode even when a caller
switches everything to train mode, and its parameters need no gradients. When the high-quality view x is
deterministic, f(x) is the same every epoch, so :func:`teacher_logits` computes it once per training
sample and stores it on disk, keyed by the teacher's weights and the x pipeline.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import TrainingError
from ..files import atomic_save_tensors

log = logging.getLogger(__name__)


class FrozenTeacher(nn.Module):
    """A model locked in eval mode with gradients off.

    Example:
        >>> teacher = FrozenTeacher(nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2)))
        >>> _ = teacher.train()
        >>> teacher.model.training
        False
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenTeacher:  # noqa: ARG002 - the teacher never trains
        super().train(False)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(teacher: nn.Module, x_pipeline: dict[str, Any]) -> str:
    """Key of a teacher-logits cache: the teacher's weights and the description of the x pipeline."""
    description = json.dumps(x_pipeline, sort_keys=True, default=str)
    return hashlib.sha256((weights_fingerprint(teacher) + description).encode()).hexdigest()[:24]


def teacher_logits(
    teacher: nn.Module,
    compute: Callable[[], torch.Tensor],
    *,
    x_pipeline: dict[str, Any],
    x_random: bool,
    cache_dir: Path | None,
    shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """f(x_i) for every training sample i, computed by ``compute()`` once and then read from disk.

    Args:
        teacher: the teacher whose weights key the cache.
        compute: returns the ``(num_samples, num_classes)`` logits in sample order.
        x_pipeline: JSON-able description of how x is made (dataset, split, size, crop, ...); part of the key.
        x_random: True when x changes from epoch to epoch; then no cache can be right and this refuses.
        cache_dir: where cached logits live (None: compute without storing).
        shape: ``(num_samples, num_classes)`` when known: a cache of another shape, or holding a NaN or an
            infinity, is computed again (with a warning) rather than trusted.

    Raises:
        TrainingError: ``x_random`` is True (run the teacher online instead).
    """
    if x_random:
        raise TrainingError(
            "teacher logits cannot be cached: the x pipeline is random (augmentation), so f(x) changes "
            "every epoch; run the teacher online instead"
        )
    path = cache_dir / f"teacher-logits-{cache_key(teacher, x_pipeline)}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        try:
            cached = load_file(str(path))["logits"]
        except (OSError, KeyError, SafetensorError) as error:  # a damaged cache (a killed copy, a full disk)
            log.warning("teacher-logits cache %s is unreadable (%s); computing the logits again", path, error)
        else:
            problem = _cache_problem(cached, shape)
            if problem is None:
                return cached
            log.warning("teacher-logits cache %s %s; computing the logits again", path, problem)
    logits = compute().float().cpu().contiguous()
    if path is not None:
        atomic_save_tensors(path, {"logits": logits}, metadata={"x_pipeline": json.dumps(x_pipeline, default=str)})
    return logits


def _cache_problem(logits: torch.Tensor, shape: tuple[int, int] | None) -> str | None:
    """Why cached logits cannot be used (None when they can)."""
    if logits.ndim != 2 or (shape is not None and tuple(logits.shape) != tuple(shape)):
        return f"holds logits of shape {tuple(logits.shape)}, expected {shape or '(samples, classes)'}"
    if not bool(torch.isfinite(logits).all()):
        return "holds NaN or infinite logits"
    return None
