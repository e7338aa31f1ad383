"""How much the decoded-image and pair caches of PairedDataset save per epoch.

Writes a CUB-like folder of JPEG photos (500x375 by default, CUB's typical size) to a temporary
directory, then reads every pair of the split for a few epochs under each cache setting and prints the
time per epoch and the speed-up over no cache:

* ``none``: decode, resize and degrade every time;
* ``memory``: decoded images and fixed pairs kept in this process;
* ``disk``: the same as ``.npz`` files (shared by DataLoader workers and later runs);
* ``redraw``: ``fixed_z=False`` -- z changes each epoch, so only decoded images are reused.

Measured on a shared 2-core CPU (200 JPEGs, 224-px crops, lowres; seconds per epoch 1 / later)::

    none     1.61 / 1.51-1.60   x1.0
    memory   2.13 / 0.07        x23
    disk     2.12 / 0.18-0.23   x7.5   (a later run reading the same folder: x5.7)
    redraw   1.68 / 0.35        x4.3

Usage::

    python benchmarks/data_cache.py [--images 200] [--size 224] [--degrade lowres] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from cqdkit.data import PairedDataset, read_cub
from cqdkit.degradations import PairMaker


def write_photos(root: Path, count: int, width: int, height: int) -> Path:
    """A CUB-layout folder of ``count`` smooth random JPEG photos with centred boxes."""
    folder = root / "CUB_200_2011"
    rng = np.random.default_rng(0)
    lines = {"images": [], "labels": [], "split": [], "boxes": []}
    for i in range(1, count + 1):
        relative = f"001.Class/{i:05d}.jpg"
        (folder / "images" / "001.Class").mkdir(parents=True, exist_ok=True)
        coarse = rng.uniform(0, 255, (12, 16, 3)).astype(np.float32)
        photo = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        photo += rng.normal(0, 12, photo.shape).astype(np.float32)
        cv2.imwrite(str(folder / "images" / relative), np.clip(photo, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines["images"].append(f"{i} {relative}")
        lines["labels"].append(f"{i} 1")
        lines["split"].append(f"{i} 1")
        lines["boxes"].append(f"{i} {width * 0.2:.1f} {height * 0.15:.1f} {width * 0.55:.1f} {height * 0.6:.1f}")
    (folder / "classes.txt").write_text("1 001.Class\n")
    for name, file in (("images", "images.txt"), ("labels", "image_class_labels.txt"),
                       ("split", "train_test_split.txt"), ("boxes", "bounding_boxes.txt")):
        (folder / file).write_text("\n".join(lines[name]) + "\n")
    return folder


def epoch_seconds(pairs: PairedDataset, epochs: int) -> list[float]:
    times = []
    for epoch in range(epochs):
        pairs.set_epoch(epoch)
        start = time.perf_counter()
        for index in range(len(pairs)):
            pairs[index]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--degrade", default="lowres")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        records = read_cub(write_photos(root, args.images, args.width, args.height)).train
        maker = PairMaker(args.degrade, size=args.size, crop=True)
        settings = {
            "none": dict(cache=None),
            "memory": dict(cache="memory"),
            "disk": dict(cache=root / "cache"),
            "redraw": dict(cache="memory", fixed_z=False),
        }
        print(f"{args.images} JPEGs {args.width}x{args.height}, views {args.size}px, crop, degrade={args.degrade!r}")
        print(f"{'cache':<8} " + " ".join(f"{'epoch ' + str(e + 1):>9}" for e in range(args.epochs)) + "   speed-up after epoch 1")
        baseline = None
        for name, options in settings.items():
            times = epoch_seconds(PairedDataset(records, maker, split="train", **options), args.epochs)
            later = float(np.mean(times[1:])) if len(times) > 1 else times[0]
            baseline = baseline or later
            row = " ".join(f"{t:8.2f}s" for t in times)
            print(f"{name:<8} {row}   x{baseline / later:.1f}")
        rerun = epoch_seconds(PairedDataset(records, maker, split="train", cache=root / "cache"), 1)[0]
        print(f"disk cache, a later run (new dataset object): {rerun:.2f}s  x{baseline / rerun:.1f}")


if __name__ == "__main__":
    main()
