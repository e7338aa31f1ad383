"""Backbones: cqdkit's own architectures (vgg-m) and the adapter to timm's model zoo."""
