"""Building a run's distillation loss by name, checked once before anything trains.

:func:`build_loss` looks the loss up, builds it at the run's temperature and calls it once on tiny random
logits, so that a loss that breaks the contract of :class:`~cqdkit.plugin.DistillLoss` -- most often one
that returns a value per sample instead of their mean -- is a one-line error naming the plugin when the run
starts, not after the teacher has trained. It is a smoke test (milliseconds); the full contract is
:func:`cqdkit.testing.check_loss`, for the plugin's own test suite.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import PluginError
from ..plugin import PluginManager, get_plugin_manager
from ..plugin.guard import describe_plugin

#: Shape of the probe logits: a batch of 2 images, 3 classes.
PROBE_BATCH, PROBE_CLASSES = 2, 3


def build_loss(name: str, *, temperature: float, manager: PluginManager | None = None) -> Any:
    """The loss ``name`` built as ``factory(temperature=temperature)``, after one call on tiny random logits.

    The loss comes from :meth:`PluginManager.loss`: a third-party loss is wrapped so that an exception
    inside it names the plugin. The probe draws from its own generator (the run's seeded streams are left
    alone) and passes labels when the entry sets ``needs_labels``.

    Raises:
        UnknownNameError: no plugin provides ``name``.
        PluginError: the factory or the loss raised, or the loss returned something other than a scalar
            tensor that depends on the student's logits (e.g. one value per sample: the mean is missing).
    """
    manager = manager or get_plugin_manager()
    entry = manager.loss(name)
    loss = entry.factory(temperature=temperature)
    plugin = manager.provider("loss", name)
    label = f"loss {name!r}" + (f" of {describe_plugin(plugin)}" if plugin is not None else "")
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(PROBE_BATCH, PROBE_CLASSES, generator=generator).requires_grad_(True)
    teacher = torch.randn(PROBE_BATCH, PROBE_CLASSES, generator=generator)
    labels = (torch.arange(PROBE_BATCH) % PROBE_CLASSES,) if entry.needs_labels else ()
    value = loss(student, teacher, *labels)
    contract = "a scalar tensor, the mean over the batch of loss(student_logits, teacher_logits)"
    if not isinstance(value, torch.Tensor):
        raise PluginError(f"{label} returned {type(value).__name__}; expected {contract}")
    if value.shape != ():
        hint = " (add .mean() over the batch)" if value.shape[:1] == (PROBE_BATCH,) else ""
        raise PluginError(f"{label} returned a tensor of shape {tuple(value.shape)} for a batch of {PROBE_BATCH}; "
                          f"expected {contract}{hint}")
    if not torch.isfinite(value.detach()).all():
        raise PluginError(f"{label} returned {value.item()} on random logits; expected a finite value")
    if not value.requires_grad:
        raise PluginError(f"{label} returned a value that does not depend on the student's logits (no gradient); "
                          "expected a differentiable function of them")
    return loss
