"""Probabilistic knowledge transfer (Passalis and Tefas, "Learning Deep Representations with Probabilistic
Knowledge Transfer", ECCV 2018): the student matches the teacher's distribution of similarities in a batch.

Each sample's embedding ``x_i`` is its layer's output averaged over the positions
(:func:`~cqdkit.losses.term.embedding`); the kernel is the cosine similarity mapped to ``[0, 1]``, and each
sample ``j`` gives a conditional distribution over the *other* samples of the batch::

    K(a, b) = (cos(a, b) + 1) / 2
    p_{i|j} = K(x_i, x_j) / sum_{k != j} K(x_k, x_j)        for i != j
    L_PKT   = 1/N * sum_j sum_{i != j} p^t_{i|j} * log(p^t_{i|j} / p^s_{i|j})

the KL divergence of the student's from the teacher's conditional distributions, summed over the samples
``i`` and averaged over the conditioning samples ``j``. As in the paper the diagonal ``i = j`` is left out
(the authors' code keeps it, and averages over all ``N**2`` entries). ``eps = 1e-7`` is used only to keep
the logs finite, ``log(max(p, eps))`` (exact wherever ``p >= eps``; a ``p^t = 0`` adds 0), and a
denominator from being 0 (which it is only when every other sample is exactly opposite to ``x_j``); a zero
embedding has cosine 0 with everything (``F.normalize``). The teacher's and the student's embeddings may
have different sizes. A batch of one sample has no pairs: the term is 0, still connected to the student's
feature. Computed in float32 (float64 stays float64).

Example:
    >>> from cqdkit.losses.term import Outputs, TermBatch
    >>> term = ProbabilisticTransfer(teacher_layer="t", student_layer="s")
    >>> feature = torch.randn(4, 8, 3, 3)
    >>> student, teacher = Outputs(None, {"s": feature}), Outputs(None, {"t": feature})
    >>> abs(term(student, teacher, TermBatch(torch.zeros(4), torch.arange(4))).item()) < 1e-6
    True
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .term import DistillContext, DistillTerm, Outputs, TermBatch, at_least_float32, embedding

#: Keeps ``log(p)`` finite where a conditional probability is (nearly) 0.
EPS = 1e-7


class ProbabilisticTransfer(DistillTerm):
    """The PKT term: KL divergence between the teacher's and the student's conditional similarity
    distributions over the batch."""

    def __init__(self, *, teacher_layer: str, student_layer: str) -> None:
        super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)

    @staticmethod
    def conditional(vectors: torch.Tensor) -> torch.Tensor:
        """``(N, N)``: entry ``[i, j]`` is ``p_{i|j}``, each column a distribution over ``i != j`` (0 on the
        diagonal)."""
        unit = F.normalize(vectors, dim=1)
        kernel = (unit @ unit.T + 1) / 2
        kernel = kernel * ~torch.eye(len(vectors), dtype=torch.bool, device=vectors.device)
        return kernel / kernel.sum(dim=0, keepdim=True).clamp_min(EPS)

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        student_feature = student.features[self.student_layers[0]]
        if len(student_feature) < 2:
            return at_least_float32(student_feature).sum() * 0
        student_vectors = embedding(at_least_float32(student_feature))
        with torch.no_grad():
            teacher_p = self.conditional(embedding(teacher.features[self.teacher_layers[0]].to(student_vectors)))
        student_p = self.conditional(student_vectors)
        divergence = teacher_p * (teacher_p.clamp_min(EPS).log() - student_p.clamp_min(EPS).log())
        return divergence.sum() / len(student_vectors)


def pkt(context: DistillContext, teacher: str = "", student: str = "") -> ProbabilisticTransfer:
    """The probabilistic knowledge transfer term between the teacher's layer ``teacher`` and the student's layer
    ``student`` (module names or stage indices, ``-1`` the last stage; empty: the last stage)."""
    return ProbabilisticTransfer(teacher_layer=context.teacher.resolve(teacher),
                                 student_layer=context.student.resolve(student))
