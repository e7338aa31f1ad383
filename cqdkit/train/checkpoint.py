"""Checkpoints: tensors in safetensors, everything else in JSON, both written atomically.

A checkpoint of epoch ``e`` is two files, ``epoch-000e.safetensors`` (model weights, the weights and buffers
of the parts its distillation terms own, optimizer buffers, torch RNG state) and ``epoch-000e.json`` (epoch,
scheduler state, optimizer hyperparameters, numpy and Python RNG states, and the SHA-256 of the tensor file).
``latest.json`` names the newest complete checkpoint and is replaced last, so a run killed at any moment
resumes from a consistent state. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import DataError, TrainingError
from ..files import atomic_save_tensors, atomic_write_json, read_regular_text, remove_ours, sha256

log = logging.getLogger(__name__)

LATEST = "latest.json"
KEEP = 2  # complete checkpoints kept on disk


@dataclass
class TrainingState:
    """What a resumed run needs: where it stopped and everything to continue bit-for-bit."""

    epoch: int  # number of completed epochs
    model: dict[str, torch.Tensor]
    parts: dict[str, torch.Tensor]  # the distillation terms' own parts (regressors, heads, memory banks)
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    extra: dict[str, Any]


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensor and JSON parts of the torch, numpy and Python RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    json_part = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }
    return tensors, json_part


def restore_rng(tensors: Mapping[str, torch.Tensor], json_part: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, keys, pos, has_gauss, gauss = json_part["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = json_part["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for param_id, values in state["state"].items():
        plain: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{key}"] = value
            else:
                plain[key] = value
        per_param[str(param_id)] = plain
    return tensors, {"param_groups": state["param_groups"], "state": per_param}


def _join_optimizer_state(tensors: Mapping[str, torch.Tensor], json_part: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in json_part["state"].items()}
    for name, tensor in tensors.items():
        if name.startswith("optim."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = tensor
    return {"state": state, "param_groups": json_part["param_groups"]}


def save_checkpoint(
    directory: Path,
    *,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    parts: torch.nn.Module | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of ``epoch`` completed epochs and point ``latest.json`` at it; ``parts`` are the
    modules the training owns besides the model (a distiller's regressor), saved under ``parts.``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"epoch-{epoch:04d}"
    rng_tensors, rng_json = capture_rng()
    optim_tensors, optim_json = _split_optimizer_state(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if parts is not None:
        tensors.update({f"parts.{k}": v for k, v in parts.state_dict().items()})
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    tensor_path = directory / f"{stem}.safetensors"
    atomic_save_tensors(tensor_path, tensors)
    state = {
        "epoch": epoch,
        "tensors": tensor_path.name,
        "sha256": sha256(tensor_path),
        "optimizer": optim_json,
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "rng": rng_json,
        "extra": extra or {},
    }
    atomic_write_json(directory / f"{stem}.json", state)
    atomic_write_json(directory / LATEST, {"checkpoint": f"{stem}.json", "epoch": epoch})
    _prune(directory, keep=KEEP)
    return directory / f"{stem}.json"


def keep_final_only(directory: Path) -> None:
    """Remove every checkpoint of a finished training but its last: the one before it is kept while training
    only in case the last is damaged by a crash, and for large networks each is gigabytes (vgg16's 1.1 GB)."""
    _prune(Path(directory), keep=1)


def _prune(directory: Path, keep: int) -> None:
    states = sorted(directory.glob("epoch-*.json"))
    for old in states[:-keep]:
        remove_ours(old)
        remove_ours(old.with_suffix(".safetensors"))


def load_checkpoint(directory: Path) -> TrainingState | None:
    """The newest complete checkpoint in ``directory``, or None if there is none.

    ``latest.json`` names it. When that pointer is unreadable (a damaged file), the newest checkpoint
    whose tensors match their recorded hash is used instead, with a warning.

    Raises:
        TrainingError: ``latest.json`` names a checkpoint that is missing or damaged (the message says
            which file), or the pointer is damaged and no intact checkpoint is left.
    """
    latest = Path(directory) / LATEST
    if not latest.exists():
        return None
    try:
        pointer = json.loads(read_regular_text(latest, "a checkpoint pointer"))  # never waits on a FIFO
        name = pointer["checkpoint"]
        if not isinstance(name, str):
            raise TypeError(f"'checkpoint' is {name!r}")
    except (OSError, KeyError, ValueError, TypeError, DataError) as error:
        for candidate in sorted(Path(directory).glob("epoch-*.json"), reverse=True):
            try:
                state = _read_state(candidate)
            except TrainingError:
                continue
            log.warning("%s is unreadable (%s); resuming from %s instead", latest, error, candidate.name)
            return state
        raise TrainingError(f"{latest} is unreadable ({error}) and no intact checkpoint is left in {directory}; "
                            "delete the folder and start again") from None
    return _read_state(Path(directory) / name)


def _read_state(state_path: Path) -> TrainingState:
    """The checkpoint described by ``state_path``, its tensors checked against their hash."""
    try:
        state = json.loads(read_regular_text(state_path, "a checkpoint"))
        tensor_path = state_path.parent / state["tensors"]
        if sha256(tensor_path) != state["sha256"]:
            raise TrainingError(f"checkpoint {tensor_path} does not match the hash recorded in {state_path}")
        tensors = load_file(str(tensor_path))
        model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        parts = {k[len("parts."):]: v for k, v in tensors.items() if k.startswith("parts.")}
        return TrainingState(
            epoch=int(state["epoch"]),
            model=model,
            parts=parts,
            optimizer=_join_optimizer_state(tensors, state["optimizer"]),
            scheduler=state["scheduler"],
            rng={"tensors": {k: v for k, v in tensors.items() if k.startswith("rng.")}, "json": state["rng"]},
            extra=state["extra"],
        )
    except TrainingError:
        raise
    except (OSError, KeyError, ValueError, TypeError, SafetensorError, DataError) as error:
        raise TrainingError(f"cannot read the checkpoint {state_path}: {error}") from error
