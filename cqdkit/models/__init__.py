"""Backbones: cqdkit's own architectures (VGG-M, ConvNet-S/M), the adapter to timm's model zoo, the
preprocessing each expects, and loading/saving weights.

Public names are imported on first access, so ``import cqdkit.models`` does not import torch::

    from cqdkit.models import create_backbone, model_input_config, load_weights, save_weights

    student = create_backbone("vggm", num_classes=200)
    teacher = create_backbone("resnet18.a1_in1k", num_classes=200, pretrained=True)  # from timm
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "create_backbone": "cqdkit.models.backbone",
    "model_input_config": "cqdkit.models.preprocessing",
    "InputConfig": "cqdkit.models.preprocessing",
    "Normalizer": "cqdkit.models.preprocessing",
    "save_model": "cqdkit.models.weights",
    "load_weights": "cqdkit.models.weights",
    "save_weights": "cqdkit.models.weights",
    "read_state_dict": "cqdkit.models.weights",
    "LoadReport": "cqdkit.models.weights",
    "VGGM": "cqdkit.models.vggm",
    "ConvNet": "cqdkit.models.convnet",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
