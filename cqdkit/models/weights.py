"""Loading and saving a network's weights from local files, safely.

``.safetensors`` files are read with safetensors; ``.pth``/``.pt`` files only with
``torch.load(weights_only=True)``, which refuses pickled code; :func:`load_weights` also converts MatConvNet
``.mat`` files (:mod:`cqdkit.models.matconvnet`). Saving always writes safetensors,
atomically (a temporary file in the same folder, then ``os.replace``).

Example::

    save_weights(teacher, "teacher.safetensors")
    report = load_weights(student, "teacher.safetensors")  # another class count: the head is skipped
    report.skipped  # ['classifier.bias', 'classifier.weight']
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DataError
from ..files import atomic_save_tensors, atomic_write_json

#: Keys under which common training scripts nest the state dict in a ``.pth`` checkpoint.
_NESTED_KEYS = ("state_dict", "model")


@dataclass
class LoadReport:
    """What :func:`load_weights` did: names of the tensors loaded and of those left as they were."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # classifier tensors of another shape
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    """Module names of the model's classifier head: from its timm-style ``pretrained_cfg``, else the
    last ``nn.Linear`` layer."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier")
    if names:
        return (names,) if isinstance(names, str) else tuple(names)
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return tuple(linears[-1:])


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors stored in a ``.safetensors``, ``.pth`` or ``.pt`` file, on the CPU.

    A ``.pth`` checkpoint that nests its tensors under ``state_dict`` or ``model`` is unwrapped, and a
    ``module.`` prefix (from DataParallel) is removed.

    Raises:
        DataError: the file is missing, of another type, corrupt, or holds pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise DataError(f"weights file {str(path)!r} is not a valid safetensors file: {error}") from error
    elif suffix in (".pth", ".pt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise DataError(
                f"weights file {str(path)!r} was refused: it is corrupt or holds pickled Python objects, "
                f"which cqdkit never loads ({_unpickler_reason(error)}); save plain tensors, e.g. as "
                ".safetensors"
            ) from error
        except (RuntimeError, EOFError, OSError) as error:
            raise DataError(f"weights file {str(path)!r} is corrupt or not a PyTorch file: {error}") from error
        state = _unwrap(state)
    else:
        raise DataError(f"weights file {str(path)!r}: expected a .safetensors, .pth or .pt file")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"weights file {str(path)!r} does not hold a mapping of names to tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def check_weights_file(path: str | os.PathLike[str]) -> None:
    """Read a ``.safetensors``/``.pth``/``.pt`` weights file once and check that every value is finite, so
    that a bad initial-weights file is refused before anything trains (other formats are left to their
    converter).

    Raises:
        DataError: what :func:`read_state_dict` refuses, or a tensor holding NaN or infinite values.
    """
    if Path(path).suffix.lower() not in (".safetensors", ".pth", ".pt"):
        return
    for name, tensor in read_state_dict(path).items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DataError(f"weights file {str(path)!r}: tensor {name!r} holds NaN or infinite values; "
                            "expected finite weights")


def _unwrap(state: object) -> object:
    if isinstance(state, Mapping):
        for key in _NESTED_KEYS:
            if isinstance(state.get(key), Mapping):
                return state[key]
    return state


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The useful line of torch's long weights-only error (e.g. "Unsupported global: ...")."""
    text = str(error)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if marker else text).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = False) -> LoadReport:
    """Load a weights file into ``model`` in place.

    A MatConvNet ``.mat`` file is converted for the model's architecture (see
    :mod:`cqdkit.models.matconvnet`). When the file records the input ``mean`` and ``std`` its weights need (a
    converted ``.mat``, or a ``.safetensors`` written by ``cqdkit convert-weights``), they replace those in the
    model's ``pretrained_cfg``, so :func:`cqdkit.models.model_input_config` returns them; a spatially varying
    average image goes into the model's :class:`~cqdkit.models.preprocessing.AverageImage` layer, whatever
    its size.

    With ``strict=False`` (the default) the classifier head may be absent from the file or have another
    class count: it keeps its fresh initialisation and a warning names the tensors skipped; other
    missing or unexpected tensors are also reported in a warning. With ``strict=True`` the file must
    match the model exactly.

    Raises:
        DataError: the file cannot be read (see :func:`read_state_dict`) or converted; a tensor outside the
            classifier has another shape; no tensor matches; or, with ``strict``, any mismatch.
    """
    from .preprocessing import AverageImage

    state, preprocessing = _read_for(model, Path(path))
    own = model.state_dict()
    head = classifier_names(model)
    any_shape = {f"{name}.residual".lstrip(".") for name, module in model.named_modules()
                 if isinstance(module, AverageImage)}  # the average image has the file's size
    report = LoadReport()
    usable: dict[str, torch.Tensor] = {}
    wrong_shape: list[str] = []
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif value.shape != own[key].shape and key not in any_shape:
            in_head = any(key.startswith(prefix + ".") for prefix in head)
            (report.skipped if in_head and not strict else wrong_shape).append(key)
        else:
            usable[key] = value
    report.loaded = sorted(usable)
    report.missing = sorted(set(own) - set(state) - any_shape)
    usable.update({key: torch.zeros(0) for key in any_shape - set(state)})  # no average image: subtract nothing
    report.skipped.sort()
    report.unexpected.sort()
    where = f"weights file {str(Path(path))!r}"
    if wrong_shape:
        details = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape[:5])
        raise DataError(f"{where} does not fit this model: tensors of another shape ({details})")
    if not usable:
        raise DataError(f"{where} has no tensor that matches this model (is it for another architecture?)")
    if strict and (report.missing or report.unexpected):
        raise DataError(
            f"{where} does not match this model exactly: missing {_some(report.missing)}, "
            f"unexpected {_some(report.unexpected)}"
        )
    model.load_state_dict(usable, strict=False)
    if preprocessing:
        model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **preprocessing}
    if report.skipped:
        warnings.warn(
            f"{where}: classifier tensors {_some(report.skipped)} have another class count and were not "
            "loaded; the classifier keeps its fresh initialisation",
            stacklevel=2,
        )
    other_missing = [k for k in report.missing if not any(k.startswith(p + ".") for p in head)]
    if other_missing or report.unexpected:
        warnings.warn(
            f"{where}: not loaded: missing {_some(other_missing)}, unexpected {_some(report.unexpected)}",
            stacklevel=2,
        )
    return report


def _read_for(model: nn.Module, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, ...]]]:
    """The file's tensors for ``model`` and the input ``mean``/``std`` the file records (empty if none)."""
    if path.suffix.lower() == ".mat":
        from .matconvnet import convert, read_matconvnet

        conversion = convert(read_matconvnet(path), model)
        return conversion.state_dict, conversion.preprocessing
    state = read_state_dict(path)
    if path.suffix.lower() != ".safetensors":
        return state, {}
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    try:
        return state, {key: tuple(float(v) for v in json.loads(metadata[key])) for key in ("mean", "std")
                       if key in metadata}
    except (ValueError, TypeError) as error:
        raise DataError(
            f"weights file {str(path)!r}: its metadata's mean/std are not lists of numbers: {error}"
        ) from error


def _some(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the model's state dict to a ``.safetensors`` file atomically; returns the path.

    Raises:
        DataError: ``path`` does not end in ``.safetensors``.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise DataError(
            f"weights are saved as safetensors: expected a path ending in .safetensors, got {str(path)!r}"
        )
    atomic_save_tensors(path, model.state_dict())
    return path


def save_model(path: Path, model: nn.Module, description: dict[str, Any]) -> None:
    """A trained model as ``path`` (safetensors weights) plus ``path.json`` describing how to rebuild it
    (architecture, classes, preprocessing, ...)."""
    atomic_save_tensors(path, model.state_dict())
    atomic_write_json(path.with_suffix(".json"), description)
