"""Relational knowledge distillation (Park, Kim, Lu and Cho, CVPR 2019): the student matches the teacher's
distances and angles between the samples of a batch.

On each sample's embedding (its layer's output averaged over the positions,
:func:`~cqdkit.losses.term.embedding`), the distance-wise and angle-wise potentials are::

    psi_D(t_i, t_j)      = ||t_i - t_j|| / mu,   mu = mean over pairs i != j of ||t_i - t_j||
    psi_A(t_i, t_j, t_k) = <e_ij, e_kj>,         e_ij = (t_i - t_j) / ||t_i - t_j||
    L_D = mean over pairs i != j of Huber(psi_D(s_i, s_j), psi_D(t_i, t_j))
    L_A = mean over triplets of distinct i, j, k of Huber(psi_A(s_i, s_j, s_k), psi_A(t_i, t_j, t_k))
    L_RKD = distance * L_D + angle * L_A

with Huber the smooth L1 loss of threshold 1 (``F.smooth_l1_loss``) and the paper's weights ``distance = 25``,
``angle = 50`` by default. The teacher's potentials are computed without gradient. The means run over the
pairs and triplets of *distinct* samples, as the paper defines them (the authors' code averages the angles
over all ``N**3`` triplets, degenerate ones included). Two embeddings closer than ``1e-6`` (squared distance
under eps = 1e-12) are taken to be at distance 0 with no direction (``e_ij = 0``, no gradient through them),
so identical embeddings give no NaN; a batch whose embeddings all coincide has ``psi_D = 0``. A batch of one
sample has no pairs and one of two no triplets: the missing part is 0, still connected to the student's
feature. Both embeddings may have different sizes. Computed in float32 (float64 stays float64); the
differences ``t_i - t_j`` take ``N * N * D`` numbers.

Example:
    >>> from cqdkit.losses.term import Outputs, TermBatch
    >>> term = RelationalKD(teacher_layer="t", student_layer="s")
    >>> feature = torch.randn(4, 8, 3, 3)
    >>> student, teacher = Outputs(None, {"s": feature}), Outputs(None, {"t": 3 * feature})
    >>> abs(term(student, teacher, TermBatch(torch.zeros(4), torch.arange(4))).item()) < 1e-6
    True
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..errors import SpecError
from .term import DistillContext, DistillTerm, Outputs, TermBatch, at_least_float32, embedding

#: Squared distances below this are 0 (it keeps norms and their gradients finite).
EPS = 1e-12


class RelationalKD(DistillTerm):
    """The RKD term: ``distance * L_D + angle * L_A`` between the student's and the teacher's embeddings."""

    def __init__(self, *, teacher_layer: str, student_layer: str, distance: float = 25.0, angle: float = 50.0) -> None:
        super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)
        for name, weight in (("distance", distance), ("angle", angle)):
            if not (math.isfinite(weight) and weight >= 0):
                raise SpecError(f"rkd's {name} weight must be a finite number >= 0, got {weight!r}")
        self.distance = float(distance)
        self.angle = float(angle)

    @staticmethod
    def potentials(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``psi_D`` as ``(N, N)`` (entry ``[i, j]``; 0 on the diagonal) and ``psi_A`` as ``(N, N, N)`` (entry
        ``[j, i, k]``, the angle at ``t_j``)."""
        differences = vectors[:, None, :] - vectors[None, :, :]  # [i, j] = t_i - t_j
        squared = differences.square().sum(dim=2)
        apart = squared > EPS
        norms = squared.clamp_min(EPS).sqrt()
        distances = norms * apart
        pairs = ~torch.eye(len(vectors), dtype=torch.bool, device=vectors.device)
        mean = distances[pairs].mean()
        unit = differences * (apart / norms)[:, :, None]  # [i, j] = e_ij, 0 where t_i = t_j
        by_vertex = unit.transpose(0, 1)  # [j, i] = e_ij
        return distances / mean.clamp_min(EPS), by_vertex @ by_vertex.transpose(1, 2)

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        student_feature = student.features[self.student_layers[0]]
        size = len(student_feature)
        loss = at_least_float32(student_feature).sum() * 0
        if size < 2:
            return loss
        student_vectors = embedding(at_least_float32(student_feature))
        with torch.no_grad():
            teacher_distance, teacher_angle = self.potentials(
                embedding(teacher.features[self.teacher_layers[0]].to(student_vectors)))
        student_distance, student_angle = self.potentials(student_vectors)
        index = torch.arange(size, device=student_vectors.device)
        if self.distance:
            pairs = index[:, None] != index[None, :]
            loss = loss + self.distance * F.smooth_l1_loss(student_distance[pairs], teacher_distance[pairs])
        if self.angle and size >= 3:
            j, i, k = index[:, None, None], index[None, :, None], index[None, None, :]
            triplets = (i != j) & (k != j) & (i != k)
            loss = loss + self.angle * F.smooth_l1_loss(student_angle[triplets], teacher_angle[triplets])
        return loss


def rkd(context: DistillContext, teacher: str = "", student: str = "", distance: float = 25.0,
        angle: float = 50.0) -> RelationalKD:
    """The relational KD term between the teacher's layer ``teacher`` and the student's layer ``student`` (module
    names or stage indices, ``-1`` the last stage; empty: the last stage), weighting its distance-wise loss by
    ``distance`` and its angle-wise loss by ``angle``."""
    return RelationalKD(teacher_layer=context.teacher.resolve(teacher), student_layer=context.student.resolve(student),
                        distance=distance, angle=angle)
