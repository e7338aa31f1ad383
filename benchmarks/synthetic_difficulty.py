"""Does each degradation cost accuracy on the synthetic dataset? A tiny CNN, trained from scratch.

For the high-quality view x (the box crop) and for each degradation's z, trains a small CNN in plain
torch on the training split's views and reports test accuracy on the same kind of view (the paper's
"train on A, test on A" and "train on B, test on B"), plus the x-trained model on z ("A on B").

Measured on a shared 2-core CPU (generator version 5, defaults: 15 epochs at 64 px, about 2.5 minutes)::

    degradation     A on A  A on B  B on B
    localization      98.7    41.3    95.0
    lowres            98.7    18.7    84.7
    edges             98.7     8.3    78.0
    tps               98.7    52.7    98.7

This CNN is trained harder than the CLI's CPU profile (convnet-s, SGD, 8 epochs), where every
degradation costs B 11-35 points (see docs/datasets.md): with enough training the tps and localization
cues can be learned from z alone.

Usage::

    python benchmarks/synthetic_difficulty.py [--size 64] [--epochs 30] [--degrade lowres edges tps localization]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from cqdkit.data import PairedDataset, load_dataset
from cqdkit.degradations import PairMaker


def views(records, spec: str, size: int, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ``(x, z, labels)`` of a split, as float tensors in [0, 1]."""
    pairs = PairedDataset(records, PairMaker(spec, size=size, crop=True), split=split, cache=None)
    xs, zs, labels = zip(*((x, z, label) for x, z, label, _, _ in (pairs[i] for i in range(len(pairs)))))
    return torch.stack(xs).float() / 255, torch.stack(zs).float() / 255, torch.tensor(labels)


def small_cnn(classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = 3
    for out in (24, 48, 64, 96):
        layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(width, classes))


def train(images: torch.Tensor, labels: torch.Tensor, classes: int, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = small_cnn(classes)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=epochs * -(-len(images) // 32))
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(images)).split(32):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(256)])
    return 100.0 * (predictions == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--degrade", nargs="+", default=["localization", "lowres", "edges", "tps"])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    dataset = load_dataset("synthetic")
    classes = dataset.num_classes
    print(f"synthetic: {classes} classes, {len(dataset.train)} train / {len(dataset.test)} test, "
          f"{args.size}px, {args.epochs} epochs, chance {100 / classes:.1f}%")
    print(f"{'degradation':<14} {'A on A':>7} {'A on B':>7} {'B on B':>7} {'seconds':>8}")
    teacher = None
    for spec in args.degrade:
        start = time.perf_counter()
        train_x, train_z, train_y = views(dataset.train, spec, args.size, "train")
        test_x, test_z, test_y = views(dataset.test, spec, args.size, "test")
        if teacher is None:  # x is the box crop whatever the degradation: one teacher serves all
            teacher = train(train_x, train_y, classes, args.epochs, args.seed)
        student = train(train_z, train_y, classes, args.epochs, args.seed)
        print(f"{spec:<14} {accuracy(teacher, test_x, test_y):7.1f} {accuracy(teacher, test_z, test_y):7.1f} "
              f"{accuracy(student, test_z, test_y):7.1f} {time.perf_counter() - start:8.1f}")


if __name__ == "__main__":
    main()
