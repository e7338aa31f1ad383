"""Trainer throughput: cqdkit's loop against a minimal hand-written PyTorch loop, on the same data.

    python benchmarks/trainer.py [--model convnet-s] [--image-size 64] [--epochs 3] [--threads 2]

Prints images/s for
- ``baseline``: a bare loop (DataLoader, normalise, forward, cross-entropy, backward, SGD step);
- ``b``: cqdkit's ``fit`` training on z (method B), checkpointing every epoch;
- ``cqd (cached)``: Equation 1 with the teacher's logits read from the cache;
- ``cqd (online)``: Equation 1 with the teacher run on x every step;
- ``fitnet (online)``: a FitNets term on the last stages (forward hooks on both networks, a 1x1 regressor),
  the teacher run on x every step;
and each one's ratio to the baseline, all measured in this run with the same model, data and batches.
Every variant is timed ``--repeats`` times in turn and the median epoch time is reported. The first epoch
of each variant is a warm-up and is not timed. Data are cached in memory beforehand so the loop is timed,
not image decoding.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cqdkit.data import PairedDataset, load_dataset
from cqdkit.models import create_backbone, model_input_config
from cqdkit.plugin import get_plugin_manager
from cqdkit.models.preprocessing import Normalizer
from cqdkit.losses.fitnet import fitnet
from cqdkit.losses.term import DistillContext, LogitTerm, WeightedTerm
from cqdkit.models.features import Layers
from cqdkit.train.engine import Objective, Optimization, TeacherSignal, fit
from cqdkit.train.evaluate import predict
from cqdkit.train.hardware import Hardware
from cqdkit.train.probe import cpu_name
from cqdkit.train.teacher import FrozenTeacher


def baseline_epochs(model, normalizer, dataset, batch_size, epochs, seed) -> list[float]:
    """A minimal hand-written loop; returns seconds per epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    times = []
    model.train()
    for _ in range(epochs):
        began = time.perf_counter()
        for _x, z, labels, _index, _box in loader:
            loss = F.cross_entropy(model(normalizer(z)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - began)
    return times


def cqdkit_epochs(model, normalizer, dataset, objective, batch_size, epochs, seed) -> list[float]:
    with tempfile.TemporaryDirectory() as directory:
        optimization = Optimization(epochs=epochs, batch_size=batch_size, lr=0.01, lr_end=0.001, seed=seed)
        result = fit(model, normalizer, dataset, objective, optimization, Hardware(), Path(directory))
    return [row["seconds"] for row in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnet-s")
    parser.add_argument("--teacher", default="convnet-s")
    parser.add_argument("--degrade", default="tps")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per repeat (plus one warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("synthetic")
    dataset = PairedDataset(data.train, args.degrade, split="train", size=args.image_size, crop=True)
    for index in range(len(dataset)):  # fill the cache: time the loop, not the decoding
        dataset[index]
    classes = data.num_classes
    normalizer = Normalizer(*_mean_std(create_backbone(args.model, num_classes=classes)))
    teacher = FrozenTeacher(create_backbone(args.teacher, num_classes=classes))
    teacher_normalizer = Normalizer(*_mean_std(teacher.model))
    cached, _ = predict(teacher, teacher_normalizer, dataset, "x", Hardware())
    softce = [WeightedTerm("softce", LogitTerm(get_plugin_manager().loss("softce").factory(temperature=10.0)), 20.0)]
    online = dict(teacher=teacher, normalizer=teacher_normalizer)
    context = DistillContext(teacher=Layers.probe(teacher.model, image_size=args.image_size),
                             student=Layers.probe(create_backbone(args.model, num_classes=classes),
                                                  image_size=args.image_size),
                             num_classes=classes, num_samples=len(dataset))

    def objectives():  # fresh terms for every training (the FitNets regressor trains)
        hint = [WeightedTerm("fitnet", fitnet(context), 1.0)]
        fitnet_layer = hint[0].term.teacher_layers
        return {
            "b": Objective(view="z"),
            "cqd (cached)": Objective(view="z", terms=softce, teacher=TeacherSignal(cached=cached)),
            "cqd (online)": Objective(view="z", terms=softce, teacher=TeacherSignal(**online)),
            "fitnet (online)": Objective(view="z", terms=hint, teacher=TeacherSignal(**online, layers=fitnet_layer)),
        }
    epochs = args.epochs + 1
    timings: dict[str, list[float]] = {name: [] for name in ["baseline", *objectives()]}
    for repeat in range(args.repeats):
        for name in timings:
            torch.manual_seed(repeat)
            model = create_backbone(args.model, num_classes=classes)
            if name == "baseline":
                seconds = baseline_epochs(model, normalizer, dataset, args.batch_size, epochs, repeat)
            else:
                seconds = cqdkit_epochs(model, normalizer, dataset, objectives()[name], args.batch_size, epochs, repeat)
            timings[name] += seconds[1:]
    images = len(dataset)
    base = images / statistics.median(timings["baseline"])
    cpu = cpu_name()
    print(f"# trainer: {args.model} (teacher {args.teacher}), {args.degrade}, {args.image_size}px, batch "
          f"{args.batch_size}, {images} images/epoch, {args.threads} threads, {cpu}, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"{'loop':<16} {'images/s':>10} {'ratio':>7}")
    for name, seconds in timings.items():
        rate = images / statistics.median(seconds)
        print(f"{name:<16} {rate:>10.0f} {rate / base:>7.3f}")


def _mean_std(model):
    config = model_input_config(model)
    return config.mean, config.std


if __name__ == "__main__":
    main()
