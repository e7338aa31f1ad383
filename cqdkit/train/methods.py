"""The five methods of the paper's Table 1: what each trains, from where, on which view, with which loss.

===========  =====================  =============  ==========================================
method       architecture           initial weights training objective
===========  =====================  =============  ==========================================
``a``        teacher                backbone init  CE on x (the teacher f)
``b``        student                backbone init  CE on z
``a-b``      student (= teacher)    from ``a``     CE on z (fine-tune A on B)
``cqd``      student                backbone init  CE on z + lambda * L2(g(z), f(x))
``a-cqd``    student (= teacher)    from ``a``     CE on z + lambda * L2(g(z), f(x))
===========  =====================  =============  ==========================================

"Backbone init" is the backbone's pretrained weights with ``--pretrained`` (the paper: ImageNet) or its
seeded random initialisation, identical for every method of a role so that rows compare fairly.

Every rule about methods lives here: :func:`resolve` turns ``"auto"`` into the distilled method a pair of
architectures allows, and :meth:`Method.unavailable` says why a method cannot run (a student that starts
from A's weights needs A's architecture and A's input channels).

Example:
    >>> resolve("auto", teacher="vggm", student="vggm").name
    'a-cqd'
    >>> resolve("auto", teacher="vgg16", student="vggm").name
    'cqd'
    >>> "same architecture" in METHODS["a-b"].unavailable(teacher="vgg16", student="vggm")
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CqdkitError

#: The method name that picks the distilled method the architectures allow.
AUTO = "auto"


@dataclass(frozen=True)
class Method:
    """One method of Table 1.

    Attributes:
        name: its command-line name (``a``, ``b``, ``a-b``, ``cqd``, ``a-cqd``).
        title: its name in the paper's tables (``A``, ``B``, ``A→B``, ``CQD``, ``A+CQD``).
        role: ``"teacher"`` or ``"student"``: which architecture it trains.
        view: ``"x"`` or ``"z"``: which view it trains on.
        from_teacher: it starts from the trained model A's weights.
        distill: it adds Equation 1's distillation term.
    """

    name: str
    title: str
    role: str
    view: str
    from_teacher: bool
    distill: bool

    @property
    def needs_teacher(self) -> bool:
        """Whether model A must be trained first (to start from it, or to distil it)."""
        return self.from_teacher or self.distill

    def baseline(self) -> Method:
        """The method this one becomes without distillation (lambda = 0): CQD -> B, A+CQD -> A→B.

        Raises:
            CqdkitError: this method does not distil.
        """
        if not self.distill:
            raise CqdkitError(f"method {self.name!r} does not distil; only cqd and a-cqd have a baseline")
        return next(m for m in METHODS.values() if not m.distill and (m.role, m.view, m.from_teacher) ==
                    (self.role, self.view, self.from_teacher))

    def architecture(self, teacher: str, student: str) -> str:
        """The backbone this method trains, given the run's teacher and student architectures."""
        return teacher if self.role == "teacher" else student

    def unavailable(
        self, *, teacher: str, student: str, x_channels: tuple[str, ...] = ("red", "green", "blue"), degrade: str = ""
    ) -> str | None:
        """Why this method cannot run with these architectures and inputs, or None when it can.

        A method that starts from A's weights needs A's architecture and, since it sees RGB z, an A that
        saw RGB x only (not privileged channels).
        """
        if not self.from_teacher:
            return None
        if teacher != student:
            return (
                f"method {self.name!r} starts the student from the teacher's weights, so teacher and student must "
                f"be the same architecture (got teacher {teacher!r}, student {student!r}); use --method cqd for a "
                "different student"
            )
        if len(x_channels) != 3:
            return (
                f"method {self.name!r} starts from the teacher's weights, but the teacher sees {len(x_channels)} "
                f"input channels ({', '.join(x_channels)}: degradation {degrade!r} adds privileged channels to x) "
                "and the student 3 (RGB z); use --method cqd"
            )
        return None

    def check(self, **context: object) -> None:
        """Raise :class:`CqdkitError` when :meth:`unavailable` gives a reason (same arguments)."""
        reason = self.unavailable(**context)  # type: ignore[arg-type]
        if reason:
            raise CqdkitError(reason)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("a", "A", "teacher", "x", from_teacher=False, distill=False),
        Method("b", "B", "student", "z", from_teacher=False, distill=False),
        Method("a-b", "A→B", "student", "z", from_teacher=True, distill=False),
        Method("cqd", "CQD", "student", "z", from_teacher=False, distill=True),
        Method("a-cqd", "A+CQD", "student", "z", from_teacher=True, distill=True),
    )
}


def method_names(*, auto: bool = False, distilled_only: bool = False) -> list[str]:
    """Method names for a command-line choice: every method (``auto`` first when asked), or only the
    distilling ones."""
    names = [m.name for m in METHODS.values() if m.distill or not distilled_only]
    return [AUTO, *names] if auto else names


def get_method(name: str) -> Method:
    """The method called ``name`` (not ``auto``: see :func:`resolve`)."""
    try:
        return METHODS[name]
    except KeyError:
        raise CqdkitError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}") from None


def resolve(
    name: str, *, teacher: str, student: str, x_channels: tuple[str, ...] = ("red", "green", "blue"),
    degrade: str = "",
) -> Method:
    """The method ``name`` stands for, checked against the architectures and x's channels.

    ``auto`` is A+CQD when the student can start from A's weights (same architecture, RGB x), else CQD.

    Raises:
        CqdkitError: an unknown name, or a method these architectures or inputs do not allow.
    """
    context = {"teacher": teacher, "student": student, "x_channels": x_channels, "degrade": degrade}
    if name == AUTO:
        starts_from_a = METHODS["a-cqd"]
        return starts_from_a if starts_from_a.unavailable(**context) is None else METHODS["cqd"]
    method = get_method(name)
    method.check(**context)
    return method
