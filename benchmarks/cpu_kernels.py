"""Training images/s on this CPU with cqdkit's kernel choices against PyTorch's plain ones, per model and size.

    python benchmarks/cpu_kernels.py [--models vgg16,vggm,convnet-s] [--sizes 32,48,64] [--batch 32]

"plain": the model as built (oneDNN convolutions everywhere) and ``torch.optim.SGD`` with its default
(foreach) update. "cqdkit": what :meth:`cqdkit.train.hardware.Hardware.prepare` and
:meth:`~cqdkit.train.hardware.Hardware.sgd` give on the CPU: single-window convolutions as matrix products
(:mod:`cqdkit.models.dense_conv`) and the fused SGD kernel. Both are timed in this one process on the same
random batch, alternating, float32, SGD with momentum 0.9 and weight decay 5e-4; the ratio is cqdkit / plain.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from cqdkit.models import create_backbone
from cqdkit.train.hardware import Hardware


def images_per_second(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                      labels: torch.Tensor, steps: int) -> float:
    """Training steps per second times the batch, after one warm-up step."""
    model.train()
    elapsed = 0.0
    for step in range(steps + 1):
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if step:
            elapsed += time.perf_counter() - began
    return steps * len(images) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,vggm,convnet-s")
    parser.add_argument("--sizes", default="32,48,64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    hardware = Hardware(device=torch.device("cpu"))
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        built = create_backbone(name, num_classes=12)
        for size in (int(s) for s in args.sizes.split(",")):
            images, labels = torch.randn(args.batch, 3, size, size), torch.zeros(args.batch, dtype=torch.long)
            plain = copy.deepcopy(built)
            plain_sgd = torch.optim.SGD(plain.parameters(), lr=1e-6, momentum=0.9, weight_decay=5e-4)
            ours = hardware.prepare(copy.deepcopy(built))
            ours_sgd = hardware.sgd(ours.parameters(), lr=1e-6, momentum=0.9, weight_decay=5e-4)
            rates = {"plain": images_per_second(plain, plain_sgd, images, labels, args.steps),
                     "cqdkit": images_per_second(ours, ours_sgd, images, labels, args.steps)}
            del plain, plain_sgd, ours, ours_sgd
            rows.append({"model": name, "size": size, **rates, "speedup": rates["cqdkit"] / rates["plain"]})
            print(f"{name:<10} {size:>4}px  plain {rates['plain']:8.1f}  cqdkit {rates['cqdkit']:8.1f}  "
                  f"x{rates['cqdkit'] / rates['plain']:.2f}", flush=True)
    print(json.dumps({"threads": torch.get_num_threads(), "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
