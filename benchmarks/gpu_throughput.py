"""Training throughput through cqdkit against a bare forward+backward loop of the same model, same device.

    python benchmarks/gpu_throughput.py --model vggm --size 224 --device cuda [--images 512] [--workers 8]

Writes a CUB-like folder of JPEGs of CUB's size (500x375) to a temporary directory, then measures, in this
one process and on one device:

* ``bare``: a minimal loop on random pixels of the same batch shape (:func:`cqdkit.train.probe.probe_training`:
  normalise, forward under bf16 autocast, cross-entropy, backward, SGD step). No data loading, no
  checkpoints: the upper bound of what the device can do with this model;
* ``cqdkit``: ``cqdkit.train.engine.fit`` on the real pipeline: the JPEGs decoded, cropped, degraded and
  cached by ``PairedDataset``, DataLoader workers, pinned memory, bf16 autocast and channels_last on CUDA,
  checkpoints every epoch. Its first epoch fills the caches and is reported apart;
* ``data``: the pipeline alone (DataLoader with workers, no model), without and with the decoded-image cache.

The target is cqdkit >= 80% of bare. Every figure is images/s, each the median of ``--epochs`` timed epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_cache import write_photos  # noqa: E402  (the CUB-like JPEG folder of the data-cache benchmark)

from cqdkit.data import PairedDataset, read_cub  # noqa: E402
from cqdkit.models import Normalizer, create_backbone  # noqa: E402
from cqdkit.train.engine import Objective, Optimization, fit  # noqa: E402
from cqdkit.train.hardware import Hardware  # noqa: E402
from cqdkit.train.probe import probe_training  # noqa: E402


def cqdkit_images_per_second(model, normalizer, dataset, hardware: Hardware, batch: int, epochs: int) -> tuple[float, float]:
    """``fit`` on the real pipeline: (first epoch, median of the later ones), images/s."""
    with tempfile.TemporaryDirectory() as directory:
        optimization = Optimization(epochs=epochs + 1, batch_size=batch, lr=1e-3, lr_end=1e-4)
        result = fit(model, normalizer, dataset, Objective(view="z"), optimization, hardware, Path(directory))
    rates = [row["images"] / row["seconds"] for row in result.history]
    return rates[0], statistics.median(rates[1:])


def data_images_per_second(dataset, workers: int, batch: int, epochs: int) -> tuple[float, float]:
    """The pipeline alone: (first epoch, median of later epochs) images/s, through a DataLoader."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
    rates = []
    for _ in range(epochs + 1):
        began = time.perf_counter()
        count = sum(len(sample.label) for sample in loader)
        rates.append(count / (time.perf_counter() - began))
    return rates[0], statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vggm")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the first")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--degrade", default="lowres")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    hardware = Hardware(device=torch.device(args.device), workers=args.workers)
    steps = max(4, args.images // args.batch_size)

    with tempfile.TemporaryDirectory() as temporary:
        records = read_cub(write_photos(Path(temporary), args.images, 500, 375)).train
        figures: dict[str, float | str] = {"model": args.model, "size": args.size, "device": str(hardware.device),
                                           "batch": args.batch_size, "workers": args.workers,
                                           "gpu": torch.cuda.get_device_name(0) if hardware.cuda else "none"}
        uncached = PairedDataset(records, args.degrade, split="train", size=args.size, crop=True, cache=None)
        figures["data_no_cache"] = data_images_per_second(uncached, args.workers, args.batch_size, 1)[1]
        cached = PairedDataset(records, args.degrade, split="train", size=args.size, crop=True,
                               cache=Path(temporary) / "cache")
        first, later = data_images_per_second(cached, args.workers, args.batch_size, args.epochs)
        figures["data_cache_first_epoch"], figures["data_cached"] = first, later

        torch.manual_seed(0)
        model = create_backbone(args.model, num_classes=10)
        figures["bare"] = probe_training(model, Normalizer.for_model(model), hardware, batch_size=args.batch_size,
                                         image_size=args.size, in_chans=3, steps=steps).images_per_second
        torch.manual_seed(0)
        model = create_backbone(args.model, num_classes=10)
        first, later = cqdkit_images_per_second(model, Normalizer.for_model(model), cached, hardware,
                                                args.batch_size, args.epochs)
        figures["cqdkit_first_epoch"], figures["cqdkit"] = first, later
    figures["ratio"] = figures["cqdkit"] / figures["bare"]
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
