"""The adapter to timm's model zoo: every timm model is a cqdkit backbone, resolved lazily by name.

Names may carry a pretrained tag (``resnet18.a1_in1k``). Nothing here enumerates timm at start-up: the
catalog's ``contains`` and ``list_names`` import timm only when asked about a name that is not one of
cqdkit's own.
"""

from __future__ import annotations

from typing import Any

from ..errors import CqdkitError


def contains(name: str) -> bool:
    """Whether timm has model ``name``: an architecture, or an architecture with a known pretrained tag."""
    import timm

    if "." in name:
        return timm.is_model(name) and timm.models.is_model_pretrained(name)
    return timm.is_model(name)


def list_names(pattern: str = "*") -> list[str]:
    """timm's names matching a shell-style wildcard: architectures (``"resnet1*"``), or architectures
    with their pretrained tags when the pattern has a '.' (``"resnet18.*"``)."""
    import timm

    if "." in pattern:
        return list(timm.list_pretrained(pattern))
    return list(timm.list_models(pattern))


def create(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> Any:
    """Build timm model ``name`` with a fresh ``num_classes``-way classifier and ``in_chans`` inputs.

    With ``pretrained=True`` timm loads its weights from the Hugging Face hub or its local cache (for
    ``in_chans != 3`` timm adapts the first convolution). ``kwargs`` go to ``timm.create_model``.

    Raises:
        CqdkitError: timm has no pretrained weights for ``name``, or they could not be fetched (offline).
    """
    import timm

    if pretrained and not timm.models.is_model_pretrained(name):
        raise CqdkitError(
            f"timm has no pretrained weights for {name!r}; load local weights with --teacher-weights PATH "
            "(`timm.list_pretrained('NAME.*')` lists the names that have weights)"
        )
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except OSError as error:  # hub unreachable, not in the cache, download interrupted
        raise CqdkitError(
            f"pretrained weights for timm model {name!r} could not be fetched ({type(error).__name__}: "
            f"{error}); connect to the Hugging Face hub once to fill timm's cache, or download the weights "
            "elsewhere and pass --teacher-weights PATH"
        ) from error
