"""A conformance check for distillation-loss plugins (cqdkit's own and third-party ones).

Call :func:`check_loss` from your plugin's test suite::

    from cqdkit.testing import check_loss

    def test_my_loss_conforms():
        check_loss("my-loss")  # or check_loss(my_plugin_module.MY_LOSS_ENTRY)

It raises ``AssertionError`` with the name of the loss and the property that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..plugin import DistillLoss, PluginManager, get_plugin_manager

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_loss(
    name_or_entry: str | DistillLoss,
    *,
    manager: PluginManager | None = None,
    temperatures: Sequence[float] = (1.0, 4.0),
    minimum_at_teacher: bool = True,
    num_classes: int = 5,
    seed: int = 0,
) -> None:
    """Check that a distillation loss keeps the contract of :class:`~cqdkit.plugin.DistillLoss`.

    For each temperature, ``entry.factory(temperature=T)`` must return a loss that, for ``(N, C)`` student
    and teacher logits (the teacher's made without gradients, as under ``torch.no_grad()``):

    - returns a finite scalar tensor, float32 for float32 inputs, for batch sizes 1 and 8;
    - is a mean over the batch: repeating the batch or permuting it leaves the value unchanged;
    - has a finite gradient with respect to the student's logits that matches finite differences
      (``torch.autograd.gradcheck`` in float64);
    - leaves its inputs unchanged;
    - computes in float32 when given bfloat16 logits under CPU autocast (the result is a finite float32);
    - with ``minimum_at_teacher``: has a zero gradient when the student's logits equal the teacher's, and
      no smaller value nearby (disable it for losses whose minimum is elsewhere).

    A loss whose entry sets ``needs_labels`` gets labels too: each row's is the teacher's lowest-scoring
    class, so they follow the rows when the batch is repeated or permuted.

    Args:
        name_or_entry: a registered loss name, or the :class:`~cqdkit.plugin.DistillLoss` itself.
        manager: where to look the name up (the process-wide manager by default).
        temperatures: temperatures to build the loss with.
        minimum_at_teacher: check that the student's logits equal to the teacher's are a minimum.
        num_classes: number of classes C of the test logits.
        seed: seed of the random test logits.

    Raises:
        AssertionError: the loss breaks the contract.
    """
    if isinstance(name_or_entry, DistillLoss):
        entry = name_or_entry
    else:
        entry = (manager or get_plugin_manager()).loss(name_or_entry)
    generator = torch.Generator().manual_seed(seed)
    for temperature in temperatures:
        loss = entry.factory(temperature=temperature) if entry.takes_temperature else entry.factory()
        if entry.needs_labels:
            loss = _with_row_labels(loss)
        label = f"loss {entry.name!r} at temperature {temperature}"
        for batch_size in (1, 8):
            student, teacher = _random_logits(batch_size, num_classes, generator)
            _check_value_and_gradient(loss, student, teacher, f"{label}, batch size {batch_size}")
        student, teacher = _random_logits(8, num_classes, generator)
        _check_batch_mean(loss, student, teacher, label)
        _check_gradcheck(loss, student, teacher, label)
        _check_low_precision(loss, student, teacher, label)
        if minimum_at_teacher:
            _check_minimum_at_teacher(loss, teacher, generator, label)


def _with_row_labels(loss: Callable[..., torch.Tensor]) -> LossFn:
    """Call a loss that needs labels with each row's label a function of that row (the teacher's
    lowest-scoring class, never its top one), so repeating or permuting the batch moves the labels along."""
    return lambda student, teacher: loss(student, teacher, teacher.argmin(dim=1))


def _random_logits(
    batch_size: int, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    student = 3 * torch.randn(batch_size, num_classes, generator=generator)
    with torch.no_grad():  # the teacher is frozen: its logits carry no graph
        teacher = 3 * torch.randn(batch_size, num_classes, generator=generator)
    return student, teacher


def _scalar(loss: LossFn, student: torch.Tensor, teacher: torch.Tensor, label: str) -> torch.Tensor:
    value = loss(student, teacher)
    assert isinstance(value, torch.Tensor), f"{label}: returned {type(value).__name__}, expected a tensor"
    assert value.shape == (), f"{label}: returned shape {tuple(value.shape)}, expected a scalar ()"
    assert torch.isfinite(value), f"{label}: returned {value.item()}, expected a finite value"
    return value


def _check_value_and_gradient(loss: LossFn, student: torch.Tensor, teacher: torch.Tensor, label: str) -> None:
    student = student.clone().requires_grad_(True)
    student_before, teacher_before = student.detach().clone(), teacher.clone()
    value = _scalar(loss, student, teacher, label)
    assert value.dtype == torch.float32, f"{label}: float32 logits gave a {value.dtype} result"
    assert value.requires_grad, f"{label}: the result does not depend on the student's logits"
    value.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all(), f"{label}: non-finite gradient"
    assert torch.equal(student.detach(), student_before), f"{label}: modified the student's logits"
    assert torch.equal(teacher, teacher_before), f"{label}: modified the teacher's logits"


def _check_batch_mean(loss: LossFn, student: torch.Tensor, teacher: torch.Tensor, label: str) -> None:
    value = _scalar(loss, student, teacher, label)
    repeated = _scalar(loss, student.repeat(3, 1), teacher.repeat(3, 1), label)
    permutation = torch.arange(student.shape[0] - 1, -1, -1)
    permuted = _scalar(loss, student[permutation], teacher[permutation], label)
    assert torch.allclose(repeated, value, rtol=1e-5, atol=1e-6), (
        f"{label}: {value.item()} for a batch but {repeated.item()} for the batch repeated 3 times; "
        "expected the mean over the batch"
    )
    assert torch.allclose(permuted, value, rtol=1e-5, atol=1e-6), f"{label}: depends on the order of the batch"


def _check_gradcheck(loss: LossFn, student: torch.Tensor, teacher: torch.Tensor, label: str) -> None:
    student64 = student[:3].double().requires_grad_(True)
    teacher64 = teacher[:3].double()
    try:
        torch.autograd.gradcheck(lambda s: loss(s, teacher64), (student64,), eps=1e-6, atol=1e-5, rtol=1e-4)
    except RuntimeError as error:  # torch.autograd.GradcheckError
        raise AssertionError(f"{label}: gradient does not match finite differences: {error}") from error


def _check_low_precision(loss: LossFn, student: torch.Tensor, teacher: torch.Tensor, label: str) -> None:
    student16 = student.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _scalar(loss, student16, teacher.bfloat16(), f"{label}, bfloat16 autocast")
    assert value.dtype == torch.float32, f"{label}: bfloat16 logits gave a {value.dtype} result, expected float32"
    value.backward()
    assert torch.isfinite(student16.grad.float()).all(), f"{label}: non-finite gradient under bfloat16 autocast"


def _check_minimum_at_teacher(
    loss: LossFn, teacher: torch.Tensor, generator: torch.Generator, label: str
) -> None:
    teacher = teacher.double()
    student = teacher.clone().requires_grad_(True)
    value = _scalar(loss, student, teacher, label)
    value.backward()
    largest = student.grad.abs().max().item()
    assert largest < 1e-6, f"{label}: gradient {largest:.3g} (not zero) when the student equals the teacher"
    for _ in range(5):
        nearby = teacher + 0.1 * torch.randn(teacher.shape, generator=generator, dtype=teacher.dtype)
        other = _scalar(loss, nearby, teacher, label)
        assert other >= value - 1e-9, (
            f"{label}: {other.item()} near the teacher's logits is below {value.item()} at them"
        )
