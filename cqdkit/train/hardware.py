"""Where and how the models compute: the device, bf16 autocast, memory layout, kernels, loader workers."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TrainingError
from ..models.dense_conv import use_dense_convolutions
from ..models.preprocessing import Normalizer


@dataclass(frozen=True)
class Hardware:
    """Where and how to compute."""

    device: torch.device = torch.device("cpu")
    amp: bool = True  # bf16 autocast on CUDA; on a CPU only with cpu_bf16
    channels_last: bool = True  # CUDA only
    compile: bool = False
    workers: int = 0
    cpu_bf16: bool = False  # bf16 autocast on the CPU (chosen per model where it was measured faster)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager[object]:
        """bf16 autocast on CUDA when ``amp``, on the CPU when ``amp`` and ``cpu_bf16``; nothing otherwise."""
        if self.cuda and self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if self.device.type == "cpu" and self.amp and self.cpu_bf16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return nullcontext()

    def to_input(self, normalizer: Normalizer, images: torch.Tensor) -> torch.Tensor:
        """Pixels (uint8, on any device) to a model's normalised input on this device and layout."""
        inputs = normalizer(images.to(self.device, non_blocking=True))
        if self.cuda and self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move ``model`` to the device and lay it out for it; returns it.

        On CUDA: channels_last when asked. On the CPU: convolutions that meet one window of input (VGG's
        first fully connected layer) run as matrix products (:mod:`cqdkit.models.dense_conv`; measured 4x
        faster there, channels_last measured slower)."""
        model.to(self.device)
        if self.cuda and self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":
            use_dense_convolutions(model)
        return model

    def sgd(self, parameters: Iterable[torch.nn.Parameter], *, lr: float, momentum: float,
            weight_decay: float = 0.0) -> torch.optim.SGD:
        """SGD with momentum in PyTorch's fused kernel (one pass over the weights instead of several; measured
        1.15-1.2x faster per training step for vgg16 and vggm on the CPU); the update is the same formula."""
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; a device that does not exist here is an error.

    Raises:
        TrainingError: not a device name, CUDA asked for but missing, or a GPU index beyond those present.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise TrainingError(f"--device {name!r} is not a device; expected cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise TrainingError(f"--device {name!r}: cqdkit runs on cpu or cuda; expected cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TrainingError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX-512 BF16, read from /proc/cpuinfo on Linux);
    elsewhere bf16 is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
