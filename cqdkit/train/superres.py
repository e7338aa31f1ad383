"""Training the SRCNN upsampler of ``lowres:upsample=srcnn`` (paper appendix, Table 4).

The paper used Dong et al.'s SRCNN pretrained on ImageNet; cqdkit trains one from scratch on the
high-quality training images of the dataset at hand, so nothing is downloaded. The training pairs are
exactly what ``lowres`` makes: the target is the luma of x, the input the luma of z = x shrunk to
``size`` pixels (at 224) and upsampled bicubically. Training sees random square patches of them, with
Adam on the mean squared error of the luma (Adam instead of Dong et al.'s plain SGD: it converges in far
fewer steps from scratch). The validation images (carved from the training split as in ``cqdkit run``)
measure the peak signal-to-noise ratio of the luma, bicubic against SRCNN, on the uint8 images that the
upsampler produces.

The result is two files: ``PATH.safetensors`` (the weights; the ``weights=`` of the spec) and
``PATH.json`` (architecture, sizes, PSNR, settings), both written atomically.

Example::

    report = train_srcnn("sr.safetensors", dataset="synthetic", size=56, image_size=64)
    report["psnr"]  # {"bicubic": ..., "srcnn": ...}
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..errors import CqdkitError, TrainingError
from ..models.srcnn import ARCH, SRCNN, rgb_to_luma, super_resolve
from ..models.weights import save_weights
from ..files import atomic_write_json, is_ours, refuse_to_overwrite
from .config import RunConfig
from .hardware import resolve_device

#: ``progress(epoch, mean training loss)``, called after each epoch (epochs count from 1).
Progress = Callable[[int, float], None]


def train_srcnn(
    out: str | Path,
    *,
    dataset: str = "synthetic",
    root: str | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    skip_bad: bool = False,
    size: int = 50,
    image_size: int | None = None,
    crop: bool | None = None,
    patch: int = 32,
    epochs: int = 60,
    batch_size: int = 16,
    lr: float = 1e-4,
    seed: int = 0,
    val_fraction: float = 0.1,
    device: str = "cpu",
    progress: Progress | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train SRCNN 9-5-5 for ``lowres:size=SIZE`` at ``image_size`` and write ``out`` and its ``.json``.

    Args:
        out: the weights file to write; must end in ``.safetensors`` (the JSON goes next to it).
        dataset, root, dataset_options, skip_bad: the dataset, as for :func:`cqdkit.data.load_dataset`.
        size: the lowres ``size`` (side of the small image for a 224-pixel input; it scales with
            ``image_size``, e.g. 56 keeps 16 pixels of 64).
        image_size: side of x and z; default as in ``cqdkit run`` (64 for synthetic, else 224).
        crop: train on the object box crops (the paper's localized images); default: when the
            dataset has boxes, as ``cqdkit run`` does.
        patch: side of the random training patches (the whole image when it is smaller).
        epochs, batch_size, lr, seed: optimisation (Adam, constant learning rate) and randomness.
        val_fraction: fraction of each class's training images held out to measure PSNR.
        device: where to train (``cpu``, ``cuda``, ``auto``); the upsampler always runs on the CPU.
        progress: called after every epoch with the epoch and its mean loss.
        force: write over ``out`` and its ``.json`` even when an earlier ``train_srcnn`` did not write them.

    Returns:
        What the JSON holds: ``arch``, ``size``, ``small`` (pixels kept), ``image_size``, ``psnr``
        (``bicubic``, ``srcnn``: mean over validation images, dB), ``history``, ``config``,
        ``wall_seconds``, plus ``weights`` (the path written).

    Raises:
        CqdkitError: bad settings, e.g. a ``size`` that keeps the full resolution, or files at ``out`` that
            are not an earlier SRCNN's (without ``force``).
        DataError: the dataset cannot be read; TrainingError: a non-finite loss.
    """
    from ..data import PairedDataset, load_dataset, split_train_val
    from ..degradations import PairMaker

    out = Path(out)
    if out.suffix.lower() != ".safetensors":
        raise CqdkitError(f"--out {str(out)!r}: expected a file name ending in .safetensors")
    image_size = image_size or RunConfig(dataset=dataset).profile_values()["image_size"]
    for name, value, minimum in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("patch", patch, 9),
                                 ("image_size", image_size, 8), ("size", size, 1)):
        if value < minimum:
            raise CqdkitError(f"{name} must be at least {minimum}, got {value}")
    if not (math.isfinite(lr) and lr > 0):
        raise CqdkitError(f"--lr must be a finite number > 0, got {lr}")
    ours = is_srcnn_sidecar(out.with_suffix(".json")) or all(is_ours(path) for path in (out, out.with_suffix(".json")))
    refuse_to_overwrite([out, out.with_suffix(".json")], ours=ours,  # (or both cqdkit's: killed between the two)
                        force=force, what="from cqdkit sr-train (no SRCNN report next to it)")
    began = time.perf_counter()
    config = {
        "dataset": dataset, "root": root, "dataset_options": dict(dataset_options or {}), "size": size,
        "image_size": image_size, "crop": crop, "patch": patch, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "optimizer": "adam", "seed": seed, "val_fraction": val_fraction,
    }
    data = load_dataset(dataset, root, skip_bad=skip_bad, **config["dataset_options"])
    crop = data.has_boxes if crop is None else crop
    maker = PairMaker(f"lowres:size={size}", size=image_size, crop=crop)
    small = maker.ops[0].small_size(image_size)
    if small == image_size:
        raise CqdkitError(
            f"lowres size={size} keeps all {image_size} pixels of a {image_size}-pixel view: nothing to upsample"
        )
    train, val = split_train_val(data.train, val_fraction, seed)
    if not val:
        raise CqdkitError(f"no validation images to measure PSNR on (val_fraction={val_fraction})")
    train_set = PairedDataset(train, maker, split="train", seed=seed)
    val_set = PairedDataset(val, maker, split="val", seed=seed)

    run_on = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    model = SRCNN()
    model.init_weights(generator)
    model.to(run_on)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for x, z, *_ in loader:
            target_luma, input_luma = _patches(_luma(x), _luma(z), patch, generator)
            loss = torch.nn.functional.mse_loss(model(input_luma.to(run_on)), target_luma.to(run_on))
            if not torch.isfinite(loss):
                raise TrainingError(f"SRCNN training: loss {loss.item()} in epoch {epoch}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(x), count + len(x)
        history.append({"epoch": epoch, "loss": total / count})
        if progress is not None:
            progress(epoch, total / count)

    model.eval()
    report = {
        "arch": ARCH,
        "size": size,
        "small": small,
        "image_size": image_size,
        "crop": crop,
        "psnr": validation_psnr(model.cpu(), val_set, batch_size),
        "train_images": len(train_set),
        "val_images": len(val_set),
        "history": history,
        "config": config,
        "wall_seconds": round(time.perf_counter() - began, 2),
    }
    save_weights(model, out)
    atomic_write_json(out.with_suffix(".json"), report)
    return {**report, "weights": str(out)}


def is_srcnn_sidecar(path: Path) -> bool:
    """Whether ``path`` is the ``.json`` that :func:`train_srcnn` writes next to its weights."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(report, dict) and report.get("arch") == ARCH and isinstance(report.get("psnr"), dict)
            and isinstance(report.get("config"), dict))


def validation_psnr(model: SRCNN, pairs: Any, batch_size: int) -> dict[str, float]:
    """Mean luma PSNR (dB, over images) of bicubic z and of SRCNN-refined z against x, on uint8 images."""
    scores: dict[str, list[float]] = {"bicubic": [], "srcnn": []}
    for x, z, *_ in DataLoader(pairs, batch_size=batch_size):
        reference = _luma(x)
        for name, images in (("bicubic", z), ("srcnn", super_resolve(model, z))):
            errors = (_luma(images) - reference).pow(2).mean(dim=(1, 2, 3))
            scores[name] += [psnr(float(error)) for error in errors]
    return {name: round(sum(values) / len(values), 3) for name, values in scores.items()}


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error of values in [0, 1] (capped at 100)."""
    return 100.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)


def _luma(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` to float luma in [0, 1], ``(N, 1, H, W)``."""
    return rgb_to_luma(images.float() / 255.0)


def _patches(
    target: torch.Tensor, source: torch.Tensor, patch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``patch x patch`` window of each image of ``target`` and ``source``."""
    height, width = target.shape[-2:]
    if patch >= height and patch >= width:
        return target, source
    ph, pw = min(patch, height), min(patch, width)
    tops = torch.randint(0, height - ph + 1, (len(target),), generator=generator).tolist()
    lefts = torch.randint(0, width - pw + 1, (len(target),), generator=generator).tolist()
    windows = [(slice(None), slice(top, top + ph), slice(left, left + pw)) for top, left in zip(tops, lefts)]
    return (torch.stack([image[w] for image, w in zip(target, windows)]),
            torch.stack([image[w] for image, w in zip(source, windows)]))
