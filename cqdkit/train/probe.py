"""A short throughput probe: how fast a backbone trains here, in float32 and (where the CPU has it) bf16.

``cqdkit run`` uses it to say up front how long training will take (:func:`estimate_training`), and every
experiment uses it to turn on bf16 autocast on a CPU only for models that it measures faster (it pays off
for large convolutions on CPUs with AMX; small networks and CPUs without bf16 hardware are faster in
float32).

Example::

    speed = probe_training(model, normalizer, hardware, batch_size=32, image_size=64, in_chans=3)
    speed.images_per_second, speed.bf16
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..files import atomic_write_json, default_cache_dir
from ..models.preprocessing import Normalizer
from .hardware import Hardware, cpu_has_fast_bf16
from .methods import get_method

if TYPE_CHECKING:
    from .experiment import Experiment

#: bf16 must be at least this much faster than float32 to be used on a CPU.
BF16_MARGIN = 1.15


@dataclass(frozen=True)
class Speed:
    """Training images/s of one model: in the mode chosen (``bf16`` or float32), and in float32."""

    images_per_second: float
    float32: float
    bf16: bool


def probe_training(model: nn.Module, normalizer: Normalizer, hardware: Hardware, *, batch_size: int,
                   image_size: int, in_chans: int, steps: int = 2) -> Speed:
    """Time ``steps`` SGD steps (after one warm-up step) on random pixels, on a copy of ``model``.

    On a CPU with bf16 hardware (and ``hardware.amp``) bf16 autocast is timed too and chosen when it is
    :data:`BF16_MARGIN` times faster. The model itself is left untouched, and so are the global random
    streams.
    """
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (batch_size, in_chans, image_size, image_size), dtype=torch.uint8,
                           generator=generator)
    labels = torch.zeros(batch_size, dtype=torch.long)
    state = torch.get_rng_state()
    try:
        float32 = training_images_per_second(model, normalizer, dataclasses.replace(hardware, cpu_bf16=False),
                                             pixels, labels, steps)
        if hardware.device.type != "cpu" or not hardware.amp or not cpu_has_fast_bf16():
            return Speed(float32, float32, bf16=hardware.cuda and hardware.amp)
        bf16 = training_images_per_second(model, normalizer, dataclasses.replace(hardware, cpu_bf16=True),
                                          pixels, labels, steps)
    finally:
        torch.set_rng_state(state)
    if bf16 >= BF16_MARGIN * float32:
        return Speed(bf16, float32, bf16=True)
    return Speed(float32, float32, bf16=False)


def cpu_precision(model: nn.Module, normalizer: Normalizer, hardware: Hardware, *, architecture: str,
                  batch_size: int, image_size: int, in_chans: int) -> dict[str, Any]:
    """Whether ``model`` trains in bf16 on this CPU: :func:`probe_training`'s choice, made once per machine, network
    and sizes and recorded in cqdkit's cache (``$CQDKIT_CACHE/precision/``), so that the numbers of a run do not
    depend on the timing noise of its own probe. ``{"cpu_bf16", "images_per_second", "float32_images_per_second"}``.
    """
    key = json.dumps([architecture, in_chans, batch_size, image_size, torch.__version__, cpu_name(),
                      torch.get_num_threads()])
    record = default_cache_dir() / "precision" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):  # none yet, or damaged: probe again
        pass
    speed = probe_training(model, normalizer, hardware, batch_size=batch_size, image_size=image_size,
                           in_chans=in_chans)
    chosen = {"cpu_bf16": speed.bf16, "images_per_second": speed.images_per_second,
              "float32_images_per_second": speed.float32, "key": key}
    atomic_write_json(record, chosen)
    return chosen


def cpu_name() -> str:
    """This CPU's model name (``/proc/cpuinfo`` on Linux, else what the platform says)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def training_images_per_second(model: nn.Module, normalizer: Normalizer, hardware: Hardware, pixels: torch.Tensor,
                               labels: torch.Tensor, steps: int) -> float:
    """SGD steps per second times the batch, on a copy of ``model``, after one warm-up step."""
    trial = hardware.prepare(copy.deepcopy(model)).train()
    normalizer = copy.deepcopy(normalizer).to(hardware.device)
    optimizer = hardware.sgd(trial.parameters(), lr=1e-6, momentum=0.9, weight_decay=5e-4)  # a real step's cost
    labels = labels.to(hardware.device)
    elapsed = 0.0
    for step in range(steps + 1):
        began = time.perf_counter()
        with hardware.autocast():
            logits = trial(hardware.to_input(normalizer, pixels))
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if hardware.cuda:
            torch.cuda.synchronize(hardware.device)
        if step:  # the first step warms up
            elapsed += time.perf_counter() - began
    return steps * len(pixels) / elapsed


def estimate_training(experiment: Experiment, method_names: list[str]) -> dict[str, Any]:
    """How long training ``method_names`` of ``experiment`` should take here (the missing models only, and A
    first when one needs it), from a short probe of each architecture: ``{"seconds", "models": {name:
    images/s}}``. A forward pass (validation each epoch, the final test) counts as a third of a step. A
    distilled method whose strength is searched counts every training the search may run
    (:func:`cqdkit.train.strength.planned_trainings`), ``"searched"`` saying how many."""
    from .strength import planned_trainings

    cfg = experiment.config
    needed = []
    searched = 0
    for name in method_names:
        method = get_method(name)
        if method.needs_teacher:
            needed.append("a")
        if method.distill:
            searched += planned_trainings(experiment, method)
            if searched:
                needed.append(method.baseline().name)
        needed.append(name)
    speeds: dict[tuple[str, int], float] = {}
    seconds, models = 0.0, {}
    for name in dict.fromkeys(needed):
        method = get_method(name)
        directory = experiment.teacher_directory if name == "a" else experiment.directory / name
        if (directory / "model.safetensors").exists():
            continue
        key = (method.architecture(cfg.teacher, cfg.student), experiment.in_chans(method))
        if key not in speeds:
            model, normalizer = experiment.initial_model(method, from_data=False)
            speeds[key] = probe_training(model, normalizer, experiment.hardware, batch_size=cfg.batch_size,
                                         image_size=cfg.image_size, in_chans=key[1]).images_per_second
        models[name] = speeds[key]
        epochs = cfg.epochs * (len(experiment.train_set) + len(experiment.val_set) / 3)
        seconds += (epochs + 2 * len(experiment.test_set) / 3) * (1 + searched * method.distill) / speeds[key]
    return {"seconds": seconds, "models": models, "searched": searched}
