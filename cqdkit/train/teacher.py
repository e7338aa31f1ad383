"""The frozen teacher f of Equation 1, what it gives the student each batch, and its outputs computed once.

The teacher never trains: :class:`FrozenTeacher` keeps the wrapped model in eval mode even when a caller
switches everything to train mode, and its parameters need no gradients. When the high-quality view x is
deterministic, f(x) is the same every epoch, so :func:`teacher_logits` computes it once per training
sample and stores it on disk, keyed by the teacher's weights and the x pipeline; :func:`teacher_features`
does the same for the features of named layers (float16 ``.npy`` files, read through a memory map).
:class:`TeacherSignal` gives a batch's teacher outputs from those caches by sample index, or from the teacher
run online.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.sample import Sample
from ..errors import TrainingError
from ..files import atomic_save_tensors, atomic_writes
from ..losses.term import Outputs
from ..models.features import FeatureTap
from ..models.preprocessing import Normalizer
from ..reporting import Reporter

if TYPE_CHECKING:
    from .hardware import Hardware

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


def teacher_features(
    teacher: nn.Module,
    compute: Callable[[dict[str, np.ndarray]], None],
    *,
    x_pipeline: dict[str, Any],
    cache_dir: Path,
    shapes: Mapping[str, tuple[int, ...]],
    num_samples: int,
) -> dict[str, np.ndarray]:
    """f's features at each layer of ``shapes`` for every training sample, computed once and then read from disk.

    Each layer is a float16 ``.npy`` file of shape ``(num_samples, *shape)`` in ``cache_dir``, keyed like the
    logits (the teacher's weights and the x pipeline) and by the layer; layers whose file is missing, of
    another shape or damaged are computed in one pass: ``compute(arrays)`` fills ``arrays[layer][i]`` for every
    sample ``i`` (writable memory maps of the files being written, which appear only once complete). Returns
    read-only memory maps.
    """
    paths = {layer: cache_dir / f"teacher-features-{cache_key(teacher, x_pipeline)}-{_file_safe(layer)}.npy"
             for layer in shapes}
    expected = {layer: (num_samples, *shape) for layer, shape in shapes.items()}
    missing = []
    for layer, path in paths.items():
        problem = _feature_cache_problem(path, expected[layer]) if path.exists() else "is missing"
        if problem is not None:
            if path.exists():
                log.warning("teacher-features cache %s %s; computing it again", path, problem)
            missing.append(layer)
    if missing:
        def fill(temporaries: list[str]) -> None:
            arrays = {layer: np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float16,
                                                      shape=expected[layer])
                      for layer, temporary in zip(missing, temporaries)}
            compute(arrays)
            for layer, array in arrays.items():
                if not _finite(array):
                    raise TrainingError(f"the teacher's features at layer {layer!r} hold NaN or infinite values "
                                        "(float16 overflow or a broken teacher); run with --no-cache-teacher")
                array.flush()
                del array

        atomic_writes([paths[layer] for layer in missing], fill)
    return {layer: np.load(path, mmap_mode="r") for layer, path in paths.items()}


def compute_features(teacher: nn.Module, normalizer: Normalizer, dataset: Dataset, hardware: Hardware,
                     arrays: dict[str, np.ndarray], *, batch_size: int, reporter: Reporter | None = None) -> torch.Tensor:
    """Fill ``arrays[layer][i]`` with the teacher's features at ``layer`` on sample ``i``'s x, for every sample
    (float16; the frozen ``teacher``'s model is tapped, single process, dataset order); returns the logits of the
    same pass, ``(N, classes)`` in dataset order (the numbers :func:`~cqdkit.train.evaluate.predict` gives)."""
    model = teacher.model if isinstance(teacher, FrozenTeacher) else teacher
    hardware.prepare(teacher).eval()
    normalizer.to(hardware.device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=hardware.workers,
                        generator=torch.Generator())
    reporter = reporter or Reporter.silent()
    logits = []
    with reporter.progress("teacher features", len(loader)) as advance, FeatureTap(model, arrays) as tap:
        for batch in loader:
            with torch.no_grad(), hardware.autocast():
                logits.append(teacher(hardware.to_input(normalizer, batch.x)).float().cpu())
            rows = batch.index.numpy()
            for layer, value in tap.take().items():
                arrays[layer][rows] = value.float().cpu().numpy().astype(np.float16)
            advance(1)
    return torch.cat(logits)


def feature_bytes(shapes: Mapping[str, tuple[int, ...]], num_samples: int) -> int:
    """Bytes the float16 feature caches of ``shapes`` take for ``num_samples`` samples."""
    return sum(2 * num_samples * math.prod(shape) for shape in shapes.values())


def _feature_cache_problem(path: Path, shape: tuple[int, ...]) -> str | None:
    """Why a features cache cannot be used (None when it can)."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:  # a damaged header, a truncated file
        return f"is unreadable ({error})"
    if array.dtype != np.float16 or tuple(array.shape) != tuple(shape):
        return f"holds {array.dtype} features of shape {tuple(array.shape)}, expected float16 {shape}"
    return None


def _finite(array: np.ndarray, block: int = 256) -> bool:
    """Whether every value of ``array`` is finite, read ``block`` samples at a time."""
    return all(bool(np.isfinite(array[start:start + block]).all()) for start in range(0, len(array), block))


def _file_safe(layer: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in layer)


class TeacherSignal:
    """f(x) for a batch: the teacher's logits and the features of ``layers``, looked up by sample index in the
    caches, or computed by the frozen teacher run online on the batch's x.

    Args:
        cached: ``(N, classes)`` logits of every training sample (None when no term reads them: ``Outputs.logits``
            is then None).
        features: ``(N, ...)`` arrays of every training sample, by layer (float16 memory maps).
        teacher: the frozen teacher, run online instead (give either the cached outputs or ``teacher``).
        normalizer: the teacher's input normalisation (online only).
        layers: the teacher layers whose features the terms read (online only; cached: ``features``'s keys).
    """

    def __init__(
        self,
        *,
        cached: torch.Tensor | None = None,
        features: Mapping[str, np.ndarray] | None = None,
        teacher: nn.Module | None = None,
        normalizer: Normalizer | None = None,
        layers: Sequence[str] = (),
    ) -> None:
        if (cached is None and not features) == (teacher is None):
            raise ValueError("give either the cached outputs or an online teacher")
        self.cached, self.teacher, self.normalizer = cached, teacher, normalizer
        self.features = dict(features or {})
        self.layers = tuple(layers) if teacher is not None else tuple(self.features)
        model = teacher.model if isinstance(teacher, FrozenTeacher) else teacher
        self.tap = FeatureTap(model, self.layers) if teacher is not None and self.layers else None

    @property
    def online(self) -> bool:
        return self.teacher is not None

    def __call__(self, batch: Sample, hardware: Hardware) -> Outputs:
        """The teacher's outputs on the batch's high-quality views x."""
        if self.teacher is not None:
            return self.run(batch.x, hardware)
        index = batch.index.cpu()
        logits = self.cached[index].to(hardware.device, non_blocking=True) if self.cached is not None else None
        rows = index.numpy()
        features = {layer: torch.from_numpy(np.asarray(array[rows])).to(hardware.device, non_blocking=True).float()
                    for layer, array in self.features.items()}
        return Outputs(logits, features)

    def run(self, images: torch.Tensor, hardware: Hardware) -> Outputs:
        """The online teacher's outputs on any uint8 images (its layers' features included)."""
        if self.teacher is None or self.normalizer is None:
            raise TrainingError("the teacher's outputs come from the cache; a live teacher needs --no-cache-teacher")
        inputs = hardware.to_input(self.normalizer, images)
        with torch.no_grad(), hardware.autocast():
            if self.tap is None:
                return Outputs(self.teacher(inputs).float())
            with self.tap:
                logits = self.teacher(inputs)
                features = self.tap.take()
        return Outputs(logits.float(), {layer: value.float() for layer, value in features.items()})
