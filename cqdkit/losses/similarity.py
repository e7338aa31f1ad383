"""Similarity-preserving knowledge distillation (Tung and Mori, ICCV 2019): the student's pairwise similarities
between the samples of a batch match the teacher's.

A layer's output, flattened per sample, is ``Q`` of shape ``(N, C*H*W)`` (``N x L*C`` for tokens, ``N x C``
for vectors); its Gram matrix over the batch, each row L2-normalised, is compared with the teacher's::

    G~ = Q Q^T,   G[i] = G~[i] / ||G~[i]||_2
    L_SP = 1/N**2 * ||G_t - G_s||_F**2

which is the paper's Equation 4 for one pair of layers (the paper sums over pairs; here one term compares
one pair and its weight is lambda). Both Gram matrices are ``N x N``, so the two layers may have any shapes.
A row of zeros (a sample whose output is 0) stays 0 (``F.normalize``, eps 1e-12). Computed in float32
(float64 stays float64).

Example:
    >>> from cqdkit.losses.term import Outputs, TermBatch
    >>> term = SimilarityPreserving(teacher_layer="t", student_layer="s")
    >>> student = Outputs(None, {"s": torch.ones(2, 4, 3, 3)})
    >>> teacher = Outputs(None, {"t": torch.ones(2, 8, 6, 6)})
    >>> round(term(student, teacher, TermBatch(torch.zeros(2), torch.arange(2))).item(), 6)
    0.0
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .term import DistillContext, DistillTerm, Outputs, TermBatch, at_least_float32


class SimilarityPreserving(DistillTerm):
    """The SP term: squared Frobenius distance of the two layers' row-normalised batch Gram matrices, over N**2."""

    def __init__(self, *, teacher_layer: str, student_layer: str) -> None:
        super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)

    @staticmethod
    def similarity(feature: torch.Tensor) -> torch.Tensor:
        """``(N, N)``: the Gram matrix of the flattened feature, each row L2-normalised."""
        flat = feature.flatten(1)
        return F.normalize(flat @ flat.T, dim=1)

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        student_feature = at_least_float32(student.features[self.student_layers[0]])
        with torch.no_grad():
            teacher_similarity = self.similarity(teacher.features[self.teacher_layers[0]].to(student_feature))
        difference = teacher_similarity - self.similarity(student_feature)
        return difference.square().sum() / len(student_feature) ** 2


def similarity_preserving(context: DistillContext, teacher: str = "", student: str = "") -> SimilarityPreserving:
    """The similarity-preserving term between the teacher's layer ``teacher`` and the student's layer ``student``
    (module names or stage indices, ``-1`` the last stage; empty: the last stage)."""
    return SimilarityPreserving(teacher_layer=context.teacher.resolve(teacher),
                                student_layer=context.student.resolve(student))
