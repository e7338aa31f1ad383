"""A conformance check for distiller plugins: a term that reads features or owns trainable parts.

Call :func:`check_distiller` from your plugin's test suite::

    from cqdkit.testing import check_distiller

    def test_my_distiller_conforms(register_plugin, cqdkit_plugin_manager):
        register_plugin(my_plugin_module)
        check_distiller("my-fitnet", manager=cqdkit_plugin_manager)

It trains tiny networks on a tiny synthetic dataset with cqdkit's own trainer (a few seconds on a CPU) and
raises ``AssertionError`` naming the distiller and the property that failed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from ..files import CACHE_ENV
from ..plugin import Distiller, DistillLoss, PluginManager, get_plugin_manager, hookimpl

#: The tiny run the check trains: 3 classes, 8 training images each, 32 px, two epochs, fixed strength.
TINY_RUN: dict[str, Any] = {
    "dataset_options": {"classes": 3, "train_per_class": 8, "test_per_class": 2, "image_size": 48},
    "degrade": "lowres", "teacher": "convnet-s", "student": "convnet-s", "method": "cqd", "image_size": 32,
    "batch_size": 8, "epochs": 2, "lam": 1.0, "temperature": 4.0, "device": "cpu", "amp": False,
}


def check_distiller(
    name_or_entry: str | Distiller,
    *,
    manager: PluginManager | None = None,
    spec: str = "",
    directory: Path | None = None,
) -> None:
    """Check that a distiller keeps the contract of :class:`cqdkit.losses.DistillTerm` in cqdkit's trainer.

    On a tiny CQD run (``convnet-s`` teacher and student, synthetic data, teacher outputs cached):

    - its factory returns a ``DistillTerm`` from the run's context, and on a real batch the term gives a finite
      scalar whose gradient reaches every parameter the term owns (finite) and the student, never the teacher;
    - the parts it owns train: at least one of their parameters changes over the run;
    - every checkpoint holds them (``parts.<key>.*``);
    - a run stopped after its first epoch and continued later (as after ``kill -9``) ends with the same student
      and the same parts, bit for bit, as a run that was never stopped;
    - the exported model (``model.safetensors``) holds the student's weights only.

    Args:
        name_or_entry: a registered distiller's name, or the :class:`~cqdkit.plugin.Distiller` entry itself.
        manager: where to look the name up (the process-wide manager by default).
        spec: parameters for the term, as in a loss spec (``"student=-2"``).
        directory: where the runs go (a temporary folder by default).

    Raises:
        AssertionError: the distiller breaks the contract.
    """
    manager = manager or get_plugin_manager()
    if isinstance(name_or_entry, (Distiller, DistillLoss)):
        manager = _with_entry(name_or_entry)
        name = name_or_entry.name
    else:
        name = name_or_entry
    loss = f"{name}:{spec}" if spec else name
    with _workspace(directory) as folder:
        _check_in(folder, name, loss, manager)


def _check_in(folder: Path, name: str, loss: str, manager: PluginManager) -> None:
    from ..reporting import Reporter
    from ..train.checkpoint import load_checkpoint
    from ..train.config import RunConfig
    from ..train.engine import TrainingStep
    from ..train.experiment import Experiment

    config = RunConfig(**TINY_RUN, loss=loss)
    quiet = Reporter.silent()
    label = f"distiller {name!r}"
    full = Experiment(config, folder / "full", manager=manager, reporter=quiet)
    objective = full.objective("cqd")
    assert objective.terms, f"{label}: the run has no distillation term"
    parts = {key: value.detach().clone() for key, value in objective.parts.state_dict().items()}
    _check_one_step(full, objective, label, TrainingStep)

    trained = full.train_or_load("cqd")
    finished = load_checkpoint(trained.directory)
    assert finished is not None, f"{label}: no checkpoint was written"
    assert set(finished.parts) == set(parts), (
        f"{label}: the checkpoint holds parts {sorted(finished.parts)}, expected {sorted(parts)}")
    floating = [key for key, value in parts.items() if value.is_floating_point()]
    if any(p.requires_grad for p in objective.parts.parameters()):
        assert any(not torch.equal(finished.parts[key], parts[key]) for key in floating), (
            f"{label}: none of its parts changed in training (does the optimizer see them?)")
    exported = load_file(str(trained.directory / "model.safetensors"))
    student = dict(trained.model.state_dict())
    assert set(exported) == set(student), (
        f"{label}: the exported model holds {sorted(set(exported) - set(student))} besides the student's weights")

    killed = Experiment(config, folder / "killed", manager=manager, reporter=quiet)
    killed.train_or_load("cqd", epochs=1)  # the process dies after the first epoch's checkpoint
    resumed = Experiment(config, folder / "killed", resume=True, manager=manager, reporter=quiet).train_or_load("cqd")
    again = load_checkpoint(resumed.directory)
    assert again is not None and again.epoch == finished.epoch
    for key, value in finished.model.items():
        assert torch.equal(again.model[key], value), f"{label}: after a resume the student's {key} differs"
    for key, value in finished.parts.items():
        assert torch.equal(again.parts[key], value), f"{label}: after a resume its part {key} differs"


def _check_one_step(experiment: Any, objective: Any, label: str, training_step: Any) -> None:
    """One forward and backward pass on a real batch: a finite scalar, gradients where they belong."""
    from ..train.methods import METHODS

    model, normalizer = experiment.initial_model(METHODS["cqd"])
    step = training_step(model, normalizer, objective, experiment.hardware).train()
    batch = next(iter(DataLoader(experiment.train_set, batch_size=8, shuffle=False)))
    _logits, loss = step(batch)
    for key, value in loss.terms.items():
        assert value.shape == () and torch.isfinite(value), f"{label}: term {key!r} gave {value} on a real batch"
    seen = {id(p) for p in (*model.parameters(), *objective.parts.parameters())}
    hidden = [leaf for leaf in _trainable_leaves(loss.total) if id(leaf) not in seen]
    assert not hidden, (f"{label}: its value depends on {len(hidden)} trainable tensor(s) of shapes "
                        f"{[tuple(t.shape) for t in hidden]} that are not submodules or parameters of the term, so the "
                        "trainer never optimises, saves or resumes them (assign them as attributes of the term)")
    loss.total.backward()
    for key, parameter in objective.parts.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{label}: its parameter {key} got no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{label}: its parameter {key} got a non-finite gradient"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), (
        f"{label}: no gradient reached the student")
    frozen = objective.teacher.teacher
    if frozen is not None:
        assert all(p.grad is None for p in frozen.parameters()), f"{label}: a gradient reached the teacher"


def _trainable_leaves(value: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor with ``requires_grad`` that ``value``'s autograd graph accumulates a gradient into."""
    leaves, seen, stack = [], set(), [value.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def _with_entry(entry: Distiller | DistillLoss) -> PluginManager:
    """A manager with cqdkit's built-ins and ``entry``."""

    class _Plugin:
        @hookimpl
        def cqdkit_losses(self) -> Iterator[Distiller | DistillLoss]:
            yield entry

    manager = PluginManager(autoload=False)
    manager.register(_Plugin(), name=f"checked-{entry.name}")
    return manager


@contextmanager
def _workspace(directory: Path | None) -> Iterator[Path]:
    """A folder for the runs and a private cqdkit cache (the synthetic data, the CPU precision record)."""
    with tempfile.TemporaryDirectory(prefix="cqdkit-check-") as temporary:
        folder = Path(directory) if directory is not None else Path(temporary)
        previous = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = str(Path(temporary) / "cache")
        try:
            yield folder
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous
