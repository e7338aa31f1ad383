"""Contrastive representation distillation (Tian, Krishnan and Isola, "Contrastive Representation
Distillation", ICLR 2020): the NCE formulation with memory buffers.

Two learned heads, ``g_s`` and ``g_t`` (linear, then L2 normalisation; owned by the term), embed one layer of
each network (its :func:`~cqdkit.losses.term.embedding`, averaged over the positions) into ``dim`` dimensions:
``v_s = g_s(s_i)`` and ``v_t = g_t(t_i)``. The critic is ``h(v, m) = exp(<v, m> / tau) / Z`` and the noise
distribution is uniform over the ``N`` training samples (``P_n = 1 / N``). For each sample ``i`` of the batch
and ``M`` negative indices ``j`` drawn uniformly from the training set without ``i``::

    L_s = -[ log h(v_s, v_t) / (h(v_s, v_t) + M P_n) + sum_j log M P_n / (h(v_s, m_t[j]) + M P_n) ]   (Z = Z_s)
    L_t = -[ log h(v_t, v_s) / (h(v_t, v_s) + M P_n) + sum_j log M P_n / (h(v_t, m_s[j]) + M P_n) ]   (Z = Z_t)
    L_CRD = mean over the batch of (L_s + L_t)

where ``m_t`` and ``m_s`` are memory banks (buffers, one row per training sample) of past teacher and student
embeddings: the student's embedding is contrasted with the teacher's and the teacher's with the student's,
as in the paper. Only the student's feature gets a gradient (the teacher's is detached; ``g_t`` is trained).

Choices made where the paper leaves them open (or where its code differs):

- the positive of sample ``i`` is the *current* embedding of ``i`` by the other network (not its memory row);
  the negatives are memory rows;
- negatives are drawn uniformly from the training set *excluding* ``i`` (the global torch generator of the
  memory's device, so a resumed run draws the same ones); ``M = negatives`` is capped at ``N - 1``;
- ``Z_s`` (for ``L_s``) and ``Z_t`` (for ``L_t``) are estimated once, from the first training batch, as
  ``N * mean(exp(score / tau))`` over that batch's positive and negative scores (the paper's implementation
  notes; over all processes' batches under torch.distributed), then kept fixed (buffers; ``-1``: not yet). Z
  is a constant: no gradient flows through it. It is set before the first batch's loss, which uses it; an
  evaluation-mode call before the first training call uses its own batch's estimate without keeping it;
- the memory banks start as random unit vectors (uniform on the sphere), not the reference code's uniform
  box; after each training call, under ``no_grad``, the rows of the batch become
  ``normalise(momentum * m_i + (1 - momentum) * v_i)`` (all processes' rows under torch.distributed; a sample
  seen twice in one step is updated once, from its first occurrence);
- the two directions are summed with equal weight, the NCE loss summed over the negatives and averaged over
  the batch (the reference code's ``-(log D1 + sum log D0) / batch``), computed in log space (no epsilon);
- the paper's supervised variant for labelled data (negatives from other classes only) is not implemented:
  the labels are ignored.

Scores are computed in the heads' precision (float32; float64 for a float64 term), autocast off.

Example:
    >>> from cqdkit.losses.term import Outputs, TermBatch
    >>> term = ContrastiveRepresentation(teacher_layer="t", student_layer="s", teacher_channels=8,
    ...                                  student_channels=4, num_samples=10, dim=16, negatives=5)
    >>> student = Outputs(None, {"s": torch.randn(2, 4, 3, 3)})
    >>> teacher = Outputs(None, {"t": torch.randn(2, 8, 3, 3)})
    >>> term(student, teacher, TermBatch(torch.zeros(2), torch.arange(2))).item() > 0
    True
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..errors import SpecError
from .term import DistillContext, DistillTerm, Outputs, TermBatch, channels_of, embedding

#: The value of a normalisation constant not yet estimated.
UNSET = -1.0


class ContrastiveRepresentation(DistillTerm):
    """The CRD term: NCE between the student's and the teacher's embeddings, negatives from memory banks."""

    def __init__(self, *, teacher_layer: str, student_layer: str, teacher_channels: int, student_channels: int,
                 num_samples: int, dim: int = 128, negatives: int = 4096, tau: float = 0.07,
                 momentum: float = 0.5) -> None:
        super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)
        if num_samples < 2:
            raise SpecError(f"contrastive distillation needs at least 2 training samples, got {num_samples}")
        if dim < 1 or negatives < 1:
            raise SpecError(f"contrastive distillation needs dim >= 1 and negatives >= 1, got {dim} and {negatives}")
        if not tau > 0:
            raise SpecError(f"contrastive distillation needs tau > 0, got {tau}")
        if not 0.0 <= momentum <= 1.0:
            raise SpecError(f"contrastive distillation needs 0 <= momentum <= 1, got {momentum}")
        self.num_samples = int(num_samples)
        self.negatives = min(int(negatives), self.num_samples - 1)
        self.tau, self.momentum = float(tau), float(momentum)
        self.student_head = nn.Linear(student_channels, dim)  # g_s
        self.teacher_head = nn.Linear(teacher_channels, dim)  # g_t
        self.register_buffer("student_memory", F.normalize(torch.randn(num_samples, dim), dim=1))
        self.register_buffer("teacher_memory", F.normalize(torch.randn(num_samples, dim), dim=1))
        self.register_buffer("student_z", torch.tensor(UNSET))  # Z_s: the student's embedding vs teacher memory
        self.register_buffer("teacher_z", torch.tensor(UNSET))  # Z_t: the teacher's embedding vs student memory

    def embed(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v_s, v_t)``, each ``(N, dim)`` and of unit norm; the teacher's feature is detached."""
        dtype = self.student_head.weight.dtype
        v_s = F.normalize(self.student_head(embedding(student_feature).to(dtype)), dim=1)
        v_t = F.normalize(self.teacher_head(embedding(teacher_feature.detach()).to(dtype)), dim=1)
        return v_s, v_t

    def draw_negatives(self, index: torch.Tensor) -> torch.Tensor:
        """``(N, negatives)`` indices drawn uniformly from ``0 .. num_samples - 1`` without each row's own index."""
        draws = torch.randint(0, self.num_samples - 1, (index.shape[0], self.negatives), device=index.device)
        return draws + (draws >= index[:, None]).long()

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        student_feature = student.features[self.student_layers[0]]
        teacher_feature = teacher.features[self.teacher_layers[0]]
        index = batch.index.to(self.student_memory.device).long()
        with torch.autocast(device_type=student_feature.device.type, enabled=False):
            v_s, v_t = self.embed(student_feature, teacher_feature)
            negatives = self.draw_negatives(index)
            positive = (v_s * v_t).sum(dim=1, keepdim=True) / self.tau
            student_scores = torch.cat([positive, self._scores(v_s, self.teacher_memory, negatives)], dim=1)
            teacher_scores = torch.cat([positive, self._scores(v_t, self.student_memory, negatives)], dim=1)
            student_z = self._normaliser(self.student_z, student_scores)
            teacher_z = self._normaliser(self.teacher_z, teacher_scores)
            loss = self._nce(student_scores, student_z) + self._nce(teacher_scores, teacher_z)
        if self.training:
            self._remember(index, v_s.detach(), v_t.detach())
        return loss

    def _scores(self, anchor: torch.Tensor, memory: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """``<anchor_i, memory[negatives[i, k]]> / tau``, ``(N, K)``: through the full score matrix when the bank
        is small, else by gathering the ``N * K`` rows (the same numbers, up to rounding). Both read a copy of
        the bank, which autograd keeps while the bank itself is updated in place."""
        if self.num_samples <= 4 * self.negatives:
            return (anchor @ memory.t().clone()).gather(1, negatives) / self.tau
        return torch.einsum("nd,nkd->nk", anchor, memory[negatives]) / self.tau

    def _normaliser(self, stored: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Z: the stored one; else, estimated from these scores (kept when training)."""
        if float(stored) != UNSET:
            return stored.to(scores.dtype)
        with torch.no_grad():
            exp = scores.double().exp()  # float64: exp(1 / tau) overflows float32 for tau below about 0.011
            total = torch.stack([exp.sum(), torch.tensor(float(exp.numel()), dtype=exp.dtype, device=exp.device)])
            if self.training and dist.is_available() and dist.is_initialized():
                dist.all_reduce(total)
            estimate = (total[0] / total[1] * self.num_samples).to(scores.dtype)
            if self.training:
                stored.fill_(estimate.item())
        return estimate

    def _nce(self, scores: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The NCE loss of scores ``(N, 1 + K)`` (positive first), averaged over the batch:
        ``-log h_pos / (h_pos + M P_n) - sum_k log M P_n / (h_k + M P_n)`` with ``log h = score - log Z``."""
        log_h = scores - torch.log(z)
        log_noise = torch.log(torch.tensor(self.negatives / self.num_samples, dtype=scores.dtype,
                                           device=scores.device))
        positive = F.softplus(log_noise - log_h[:, 0])
        negative = F.softplus(log_h[:, 1:] - log_noise).sum(dim=1)
        return (positive + negative).mean()

    @torch.no_grad()
    def _remember(self, index: torch.Tensor, v_s: torch.Tensor, v_t: torch.Tensor) -> None:
        """The momentum update of both banks at the batch's rows (every process's, under torch.distributed)."""
        index, v_s, v_t = _gather(index, v_s, v_t)
        first = _first_occurrences(index)
        index, v_s, v_t = index[first], v_s[first], v_t[first]
        for memory, value in ((self.student_memory, v_s), (self.teacher_memory, v_t)):
            mixed = self.momentum * memory[index] + (1.0 - self.momentum) * value.to(memory.dtype)
            memory.index_copy_(0, index, F.normalize(mixed, dim=1))


def _first_occurrences(index: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct value of ``index``."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    first = torch.full((unique.numel(),), index.numel(), dtype=positions.dtype, device=index.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")


def _gather(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor concatenated over the processes along its first dimension (sizes may differ); as it is
    without torch.distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    world_size = dist.get_world_size()
    size = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    gathered = []
    for tensor in tensors:
        padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(parts, padded.contiguous())
        gathered.append(torch.cat([part[:count] for part, count in zip(parts, counts)]))
    return tuple(gathered)


def crd(context: DistillContext, teacher: str = "", student: str = "", dim: int = 128, negatives: int = 4096,
        tau: float = 0.07, momentum: float = 0.5) -> ContrastiveRepresentation:
    """The CRD term between the teacher's layer ``teacher`` and the student's layer ``student`` (module names or
    stage indices, ``-1`` the last stage; empty: the last stage), with memory banks over the context's
    ``num_samples`` training samples."""
    teacher_layer, student_layer = context.teacher.resolve(teacher), context.student.resolve(student)
    return ContrastiveRepresentation(teacher_layer=teacher_layer, student_layer=student_layer,
                                     teacher_channels=channels_of(context.teacher.shape(teacher_layer)),
                                     student_channels=channels_of(context.student.shape(student_layer)),
                                     num_samples=context.num_samples, dim=dim, negatives=negatives, tau=tau,
                                     momentum=momentum)
