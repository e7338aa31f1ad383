"""Training images/s on this CPU in float32 and under bf16 autocast, per model and input size.

    python benchmarks/cpu_precision.py [--models convnet-s,vggm,vgg16,resnet18] [--sizes 32,64] [--batch 32]

Both precisions are timed by cqdkit's throughput probe (:func:`cqdkit.train.probe.probe_training` with bf16
forced on and off), in this one process, on random pixels. It prints whether this CPU has bf16 hardware (AMX
or AVX-512 BF16): only then does cqdkit itself consider bf16 on the CPU, and only for models it measures at
least 15% faster. Accuracy under bf16 is a separate question (see docs/results.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from cqdkit.models import Normalizer, create_backbone
from cqdkit.train import probe
from cqdkit.train.hardware import Hardware, cpu_has_fast_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="convnet-s,vggm,vgg16,resnet18")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    rows = []
    hardware = Hardware(device=torch.device("cpu"))
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = create_backbone(name, num_classes=12)
        normalizer = Normalizer.for_model(model)
        for size in (int(s) for s in args.sizes.split(",")):
            rates = {}
            for bf16 in (False, True):
                rates["bf16" if bf16 else "float32"] = probe.training_images_per_second(
                    model, normalizer, dataclasses.replace(hardware, cpu_bf16=bf16),
                    torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8),
                    torch.zeros(args.batch, dtype=torch.long), args.steps)
            rows.append({"model": name, "size": size, **rates, "bf16_speedup": rates["bf16"] / rates["float32"]})
            print(f"{name:<10} {size:>4}px  float32 {rates['float32']:8.1f}  bf16 {rates['bf16']:8.1f}  "
                  f"x{rates['bf16'] / rates['float32']:.2f}", flush=True)
    print(json.dumps({"cpu_has_fast_bf16": cpu_has_fast_bf16(), "threads": torch.get_num_threads(),
                      "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
