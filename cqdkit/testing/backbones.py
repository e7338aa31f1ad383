"""A conformance check for backbone plugins: call it from your own tests.

Example::

    from cqdkit.testing import check_backbone

    def test_tinycnn():
        check_backbone("tinycnn")            # or check_backbone("tinycnn", manager=my_manager)

It builds the backbone with ``cqdkit.models.create_backbone`` as ``cqdkit run`` does and checks what cqdkit
relies on:

- the factory returns a ``torch.nn.Module`` that maps ``(N, in_chans, S, S)`` images to ``(N, classes)``
  logits, for a few class counts and input channel counts (more than 3 when a degradation gives the
  teacher extra channels), in training and in evaluation mode, also for a batch of one in evaluation;
- cqdkit's preprocessing works for it: ``model_input_config`` (its ``pretrained_cfg``'s ``mean`` and
  ``std``) gives one mean and one std per input channel, and the model takes the normalised pixels;
- the classifier module named by ``pretrained_cfg["classifier"]`` exists, and every tensor whose shape
  depends on the class count lives in the classifier (that is how weights trained for another class count
  load without their head); without the name, cqdkit takes the last ``nn.Linear``;
- its initialisation is drawn from torch's random generator (the same seed builds the same weights:
  every method of a run starts from the same initial model);
- one SGD step on a cross-entropy loss is finite and changes its weights.

It raises ``AssertionError`` naming the backbone, the arguments and the property that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..plugin import PluginManager


def check_backbone(
    name: str,
    *,
    manager: PluginManager | None = None,
    num_classes: Sequence[int] = (2, 5),
    in_chans: Sequence[int] = (3, 4),
    image_size: int = 32,
) -> None:
    """Check that backbone ``name`` keeps cqdkit's contract (see the module docstring).

    Args:
        name: a backbone name, as given to ``cqdkit run --teacher`` (a catalog's names work too).
        manager: where to look the name up (the process-wide manager by default).
        num_classes: class counts to build it with (at least two different ones).
        in_chans: input channel counts to build it with (3 is RGB; more for a teacher with extra channels).
        image_size: side of the square test images.

    Raises:
        AssertionError: the backbone breaks the contract.
    """
    with torch.random.fork_rng(devices=[]):  # the caller's random streams are left as they were
        for channels in in_chans:
            shapes = {}
            for classes in num_classes:
                label = f"backbone {name!r} with num_classes={classes}, in_chans={channels}"
                model = _build(name, classes, channels, manager, label)
                _check_forward(model, classes, channels, image_size, label)
                shapes[classes] = {key: tuple(value.shape) for key, value in model.state_dict().items()}
                _check_classifier(model, label)
            _check_class_dependent_tensors(model, shapes, f"backbone {name!r} with in_chans={channels}")
        channels, classes = in_chans[0], num_classes[0]
        label = f"backbone {name!r} with num_classes={classes}, in_chans={channels}"
        _check_seeded_initialisation(name, classes, channels, manager, label)
        _check_training_step(_build(name, classes, channels, manager, label), classes, channels, image_size, label)


def _build(name: str, classes: int, channels: int, manager: PluginManager | None, label: str) -> nn.Module:
    from ..models import create_backbone

    model = create_backbone(name, num_classes=classes, in_chans=channels, manager=manager)
    assert isinstance(model, nn.Module), f"{label}: the factory returned {type(model).__name__}, expected a torch.nn.Module"
    return model


def _pixels(batch: int, channels: int, size: int) -> torch.Tensor:
    """Random uint8 pixels 0..255, channels first: what cqdkit's data pipeline hands a model."""
    return torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8)


def _forward(model: nn.Module, inputs: torch.Tensor, label: str, channels: int) -> torch.Tensor:
    try:
        return model(inputs)
    except Exception as error:
        hint = " (a factory that ignores in_chans builds a network for 3 channels)" if channels != 3 else ""
        raise AssertionError(f"{label}: the forward pass of a {tuple(inputs.shape)} batch raised "
                             f"{type(error).__name__}: {error}{hint}") from error


def _check_forward(model: nn.Module, classes: int, channels: int, size: int, label: str) -> None:
    from ..models import Normalizer, model_input_config

    for batch, training in ((2, True), (2, False), (1, False)):
        model.train(training)
        raw = _forward(model, torch.randn(batch, channels, size, size), label, channels)
        expected = (batch, classes)
        assert isinstance(raw, torch.Tensor) and tuple(raw.shape) == expected, (
            f"{label}: output of shape {tuple(getattr(raw, 'shape', ()))} for {batch} images of {size}x{size} "
            f"in {'training' if training else 'evaluation'} mode; expected {expected} logits")
    config = model_input_config(model)
    assert len(config.mean) == len(config.std) == channels, (
        f"{label}: its pretrained_cfg gives {len(config.mean)} means and {len(config.std)} stds for {channels} "
        "input channels; cqdkit normalises each channel with its own")
    normalised = Normalizer.for_model(model)(_pixels(2, channels, size))
    model.eval()
    logits = _forward(model, normalised, label, channels)
    assert torch.isfinite(logits).all(), f"{label}: non-finite logits for normalised pixel input"


def _check_classifier(model: nn.Module, label: str) -> None:
    from ..models.weights import classifier_names

    configured = getattr(model, "pretrained_cfg", None) or {}
    names = classifier_names(model)
    assert names, f"{label}: no classifier: its pretrained_cfg names none and it has no nn.Linear layer"
    for head in names:
        try:
            model.get_submodule(head)
        except AttributeError:
            where = "pretrained_cfg['classifier']" if configured.get("classifier") else "the classifier"
            raise AssertionError(f"{label}: {where} is {head!r}, but the model has no module {head!r}") from None


def _check_class_dependent_tensors(model: nn.Module, shapes: dict[int, dict[str, tuple[int, ...]]],
                                   label: str) -> None:
    from ..models.weights import classifier_names

    first, *others = shapes.values()
    if not others:
        return
    heads = classifier_names(model)
    for other in others:
        assert first.keys() == other.keys(), (
            f"{label}: the class count changes which tensors the model has: {sorted(first.keys() ^ other.keys())}")
        changing = [key for key in first if first[key] != other[key]]
        outside = [key for key in changing if not any(key == h or key.startswith(h + ".") for h in heads)]
        assert not outside, (
            f"{label}: tensors {outside} change shape with the class count but are outside the classifier "
            f"{list(heads)}; weights trained for another class count would not load (name the classifier module "
            "in pretrained_cfg['classifier'])")


def _check_seeded_initialisation(name: str, classes: int, channels: int, manager: PluginManager | None,
                                 label: str) -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(1234)
        states.append(_build(name, classes, channels, manager, label).state_dict())
    differing = [key for key in states[0] if not torch.equal(states[0][key], states[1][key])]
    assert not differing, (
        f"{label}: two builds after torch.manual_seed(1234) differ in {differing[:5]}; draw the initial weights "
        "from torch's random generator so every method of a run starts from the same model")


def _check_training_step(model: nn.Module, classes: int, channels: int, size: int, label: str) -> None:
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    assert trainable, f"{label}: no trainable parameters; one training step would change nothing"
    before = [parameter.detach().clone() for parameter in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)
    model.train()
    logits = _forward(model, torch.randn(4, channels, size, size), label, channels)
    loss: Any = nn.functional.cross_entropy(logits, torch.arange(4) % classes)
    assert torch.isfinite(loss), f"{label}: non-finite cross-entropy {loss.item()} on random images"
    optimizer.zero_grad()
    loss.backward()
    for (parameter_name, parameter) in model.named_parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all(), f"{label}: non-finite gradient of {parameter_name}"
    optimizer.step()
    changed = any(not torch.equal(old, parameter.detach()) for old, parameter in zip(before, trainable))
    assert changed, f"{label}: one training step (SGD on cross-entropy) changed no weight"
