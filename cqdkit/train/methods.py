"""The five methods of the paper's Table 1, as data.

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
seeded random initialisation, identical for every method of a run so that rows compare fairly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    title: str  # as in the paper's tables
    role: str  # "teacher" or "student": which architecture it uses
    view: str  # "x" or "z": which view it trains on
    from_teacher: bool  # initialised from the trained model A
    distill: bool  # uses Equation 1's distillation term


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
