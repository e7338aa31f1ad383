"""Building a run's distillation terms from their specs, each checked once before anything trains.

:func:`build_terms` builds every term of a loss spec (:mod:`cqdkit.losses.spec`) -- a logit loss wrapped in a
:class:`~cqdkit.losses.term.LogitTerm`, a distiller by its factory with the run's
:class:`~cqdkit.losses.term.DistillContext` -- and calls a copy of it once on small random outputs of the
right shapes, so that a term that breaks the contract of :class:`~cqdkit.losses.term.DistillTerm` (most often
one that returns a value per sample instead of their mean) is a one-line error naming the plugin when the
run starts, not after the teacher has trained. :func:`build_loss` does the same for one logit loss by name.
These are smoke tests (milliseconds); the full contracts are :func:`cqdkit.testing.check_loss` and
:func:`cqdkit.testing.check_distiller`, for a plugin's own test suite.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import PluginError
from ..plugin import DistillLoss, PluginManager, get_plugin_manager
from ..plugin.guard import describe_plugin, reraise
from .spec import TermSpec
from .term import DistillContext, DistillTerm, LogitTerm, Outputs, TermBatch, WeightedTerm

#: Shape of the probe logits: a batch of 2 images, 3 classes.
PROBE_BATCH, PROBE_CLASSES = 2, 3
_CONTRACT = "a scalar tensor, the mean over the batch of loss(student_logits, teacher_logits)"


def build_loss(name: str, *, temperature: float, manager: PluginManager | None = None) -> Any:
    """The logit loss ``name`` built as ``factory(temperature=temperature)``, after one call on tiny random logits.

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
    if not isinstance(entry, DistillLoss):
        raise PluginError(f"{name!r} is a distiller, not a logit loss; build it with build_terms")
    loss = entry.factory(temperature=temperature) if entry.takes_temperature else entry.factory()
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(PROBE_BATCH, PROBE_CLASSES, generator=generator).requires_grad_(True)
    teacher = torch.randn(PROBE_BATCH, PROBE_CLASSES, generator=generator)
    labels = (torch.arange(PROBE_BATCH) % PROBE_CLASSES,) if entry.needs_labels else ()
    check_value(loss(student, teacher, *labels), _label(manager, name), _CONTRACT)
    return loss


def build_terms(terms: Sequence[TermSpec], context: DistillContext, *, manager: PluginManager | None = None,
                seed: int = 0, check: bool = True) -> list[WeightedTerm]:
    """Every term of a complete loss spec (weights and temperatures set), built and, with ``check``, called once
    on random outputs (:func:`probe_term`).

    A term's own parts (a regressor's weights) are initialised from ``seed`` and the term's place in the spec,
    whatever ran before; the global random streams are left as they were.

    Raises:
        UnknownNameError: no plugin provides a term.
        PluginError: a factory raised or returned something that is not a :class:`DistillTerm`, or the term,
            called once on random outputs of the right shapes, broke the contract.
        SpecError: a bad parameter (a layer the network does not have).
    """
    manager = manager or get_plugin_manager()
    built: list[WeightedTerm] = []
    for position, spec in enumerate(terms):
        if not spec.complete():
            raise ValueError(f"term {spec.text()!r} has no weight or temperature yet")
        entry = manager.loss(spec.name)
        plugin = manager.provider("loss", spec.name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_term_seed(seed, position, spec.name))
            if isinstance(entry, DistillLoss):  # its temperature, when it takes one, is among the params
                term: Any = LogitTerm(entry.factory(**spec.params), needs_labels=entry.needs_labels)
            else:
                term = entry.factory(context, **spec.params)
        if not isinstance(term, DistillTerm):
            raise PluginError(f"{_label(manager, spec.name)}: its factory returned {type(term).__name__}; expected a "
                              "cqdkit.losses.DistillTerm")
        key = spec.name if all(t.spec.name != spec.name for t in built) else f"{spec.name}-{position + 1}"
        weighted = WeightedTerm(key, term, float(spec.weight), spec, plugin)
        if check:
            probe_term(weighted, context, _label(manager, spec.name))
        built.append(weighted)
    return built


def probe_term(weighted: WeightedTerm, context: DistillContext, label: str) -> None:
    """Call a copy of the term once on random outputs of the context's shapes (its own random streams; the
    term itself is left untouched).

    Raises:
        PluginError: the term raised, or did not return a finite scalar that depends on the student's outputs.
    """
    term = copy.deepcopy(weighted.term).train()
    generator = torch.Generator().manual_seed(0)
    classes = max(context.num_classes, 2)

    def outputs(layers: Sequence[str], shapes: Any, grad: bool) -> Outputs:
        logits = torch.randn(PROBE_BATCH, classes, generator=generator).requires_grad_(grad)
        features = {name: torch.randn(PROBE_BATCH, *shapes.shape(name), generator=generator).requires_grad_(grad)
                    for name in layers}
        return Outputs(logits, features)

    batch = TermBatch(labels=torch.arange(PROBE_BATCH) % classes,
                      index=torch.arange(PROBE_BATCH) % max(context.num_samples, 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            value = term(outputs(term.student_layers, context.student, True),
                         outputs(term.teacher_layers, context.teacher, False), batch)
        except Exception as error:  # a plugin's bug: one line naming it
            reraise(weighted.plugin, f"distillation term {weighted.key!r}", error)
    check_value(value, label, "a scalar tensor, the mean over the batch, of the student's outputs", "outputs")


def check_value(value: Any, label: str, contract: str, inputs: str = "logits") -> None:
    """Raise a :class:`PluginError` naming ``label`` unless ``value`` is a finite scalar tensor with a gradient
    (with respect to the student's ``inputs``)."""
    if not isinstance(value, torch.Tensor):
        raise PluginError(f"{label} returned {type(value).__name__}; expected {contract}")
    if value.shape != ():
        hint = " (add .mean() over the batch)" if value.shape[:1] == (PROBE_BATCH,) else ""
        raise PluginError(f"{label} returned a tensor of shape {tuple(value.shape)} for a batch of {PROBE_BATCH}; "
                          f"expected {contract}{hint}")
    if not torch.isfinite(value.detach()).all():
        raise PluginError(f"{label} returned {value.item()} on random {inputs}; expected a finite value")
    if not value.requires_grad:
        raise PluginError(f"{label} returned a value that does not depend on the student's {inputs} (no gradient); "
                          "expected a differentiable function of them")


def _label(manager: PluginManager, name: str) -> str:
    plugin = manager.provider("loss", name)
    return f"loss {name!r}" + (f" of {describe_plugin(plugin)}" if plugin is not None else "")


def _term_seed(seed: int, position: int, name: str) -> int:
    """The seed of a term's own parts: from the run's seed, its place in the spec and its name only."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{position}:{name}".encode()).digest()[:8], "little")
