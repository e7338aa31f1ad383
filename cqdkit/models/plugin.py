"""Built-in backbone plugin: cqdkit's own networks and the lazily resolved timm catalog.

Factories import torch (and timm) only when called, so listing plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import Backbone, BackboneCatalog, hookimpl


def vggm(num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> Any:
    """VGG-M; see :mod:`cqdkit.models.vggm`."""
    from .vggm import vggm as build

    return build(num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)


def convnet_s(num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> Any:
    """ConvNet-S; see :mod:`cqdkit.models.convnet`."""
    from .convnet import convnet

    return convnet("convnet-s", num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)


def convnet_m(num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> Any:
    """ConvNet-M; see :mod:`cqdkit.models.convnet`."""
    from .convnet import convnet

    return convnet("convnet-m", num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)


def _timm_contains(name: str) -> bool:
    from .timm_catalog import contains

    return contains(name)


def _timm_list_names(pattern: str) -> list[str]:
    from .timm_catalog import list_names

    return list_names(pattern)


def _timm_create(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> Any:
    from .timm_catalog import create

    return create(name, num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)


@hookimpl
def cqdkit_backbones() -> Iterator[Backbone | BackboneCatalog]:
    yield Backbone(
        name="vggm", summary="VGG-M (Chatfield et al. 2014), the paper's network; 102.9M parameters", factory=vggm
    )
    yield Backbone(
        name="convnet-s", summary="Small conv-BN-ReLU net (0.1M parameters) for CPU training at 32-64 px",
        factory=convnet_s,
    )
    yield Backbone(
        name="convnet-m", summary="Wider conv-BN-ReLU net (0.4M parameters), a teacher for convnet-s",
        factory=convnet_m,
    )
    yield BackboneCatalog(
        name="timm",
        summary="Any timm model by name, e.g. resnet18 or resnet18.a1_in1k (pretrained tags allowed)",
        contains=_timm_contains,
        list_names=_timm_list_names,
        factory=_timm_create,
    )
