"""Fitting the router's quality classifier: multinomial logistic regression on log spectra.

Features are standardised (per-dimension mean and standard deviation of the training features), then a
linear classifier is fitted by full-batch L-BFGS with an L2 penalty, starting from zero weights. Nothing
is random, so the same features always give the same classifier.

Example::

    clean = spectrum_features(router, train_set, "x")
    lowres = spectrum_features(router, train_set_lowres, "z")
    train_accuracy = fit_quality_classifier(router, [clean, lowres])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import CqdkitError
from ..data.sample import check_view
from .router import QualityRouter

#: Weight of the L2 penalty on the standardised features' weights.
L2 = 1e-3


@torch.no_grad()
def spectrum_features(
    router: QualityRouter,
    dataset: Dataset,
    view: str,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(N, out_size**2)`` spectra of one view (``"x"`` or ``"z"``) of a paired dataset, in order."""
    check_view(view)
    router.spectrum.to(device)
    rows = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        rows.append(router.features(batch.view(view).to(device)).cpu())
    if not rows:
        raise CqdkitError(f"no images to compute spectra of (empty dataset, view {view})")
    return torch.cat(rows)


def _stack(features: Sequence[torch.Tensor], router: QualityRouter) -> tuple[torch.Tensor, torch.Tensor]:
    if len(features) != len(router.qualities):
        raise CqdkitError(f"need features for each of the {len(router.qualities)} qualities {router.qualities}, "
                          f"got {len(features)} sets")
    dims = router.spectrum.num_features
    for name, block in zip(router.qualities, features):
        if block.dim() != 2 or block.shape[1] != dims or len(block) == 0:
            raise CqdkitError(f"features of quality {name!r} must have shape (n > 0, {dims}), got {tuple(block.shape)}")
    inputs = torch.cat([block.float().cpu() for block in features])
    labels = torch.cat([torch.full((len(block),), k, dtype=torch.long) for k, block in enumerate(features)])
    return inputs, labels


def fit_quality_classifier(
    router: QualityRouter,
    features: Sequence[torch.Tensor],
    *,
    l2: float = L2,
    max_iter: int = 200,
) -> float:
    """Fit ``router``'s quality classifier on ``features[k]`` (spectra of quality ``k``); returns its
    accuracy on those training features.

    Args:
        router: the router whose classifier (and feature standardisation) is replaced.
        features: one ``(n_k, D)`` block per quality, in the order of ``router.qualities``.
        l2: penalty ``l2 / 2 * ||W||^2`` on the weights of the standardised features.
        max_iter: L-BFGS iterations.
    """
    inputs, labels = _stack(features, router)
    mean = inputs.mean(dim=0)
    std = inputs.std(dim=0, unbiased=False).clamp_min(1e-6)
    standard = (inputs - mean) / std
    k = len(router.qualities)
    weight = torch.zeros(k, inputs.shape[1], requires_grad=True)
    bias = torch.zeros(k, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-7, tolerance_change=1e-10,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(standard @ weight.T + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    router.set_classifier(weight.detach(), bias.detach(), mean, std)
    return quality_accuracy(router, features)


@torch.no_grad()
def quality_accuracy(router: QualityRouter, features: Sequence[torch.Tensor]) -> float:
    """Fraction of ``features[k]`` rows that the router's classifier assigns to quality ``k``."""
    inputs, labels = _stack(features, router)
    device = router.classifier.weight.device
    predicted = router.classify(inputs.to(device)).argmax(dim=1).cpu()
    return float((predicted == labels).float().mean())
