"""A multi-quality model: a quality classifier picks, per image, the expert trained for that quality.

The paper's multi-resolution model (section 2.3, Figure 5) with any number of qualities::

    pixels (B, 3, H, W) 0..255 --/255, grayscale--> log spectrum (65 x 65) --linear--> quality q
    images --expert k (its own normalisation)--> logits_k, for every k;  output = logits_q per image

Every expert runs on every image and the output is gathered by the predicted quality, so one forward
call is a fixed graph that ``torch.export`` or ``torch.jit.trace`` captures whole (the price: K expert
passes per image). :meth:`QualityRouter.save` writes the weights as safetensors and everything needed to
rebuild the module as JSON; :meth:`QualityRouter.load` rebuilds it with :func:`cqdkit.models.create_backbone`.

Example::

    router = QualityRouter(["clean", "lowres"], [Expert("convnet-s", a, a_norm), Expert("convnet-s", g, g_norm)],
                           num_classes=12, image_size=64)
    fit_quality_classifier(router, [clean_features, lowres_features])   # cqdkit.routing.fit
    logits = router(pixels)                # uint8 (B, 3, 64, 64) in; (B, 12) out, each row from its quality's expert
    router.save(Path("router.safetensors"))  # + router.json
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CqdkitError, DataError
from ..models.preprocessing import Normalizer
from ..models.weights import save_model
from .spectrum import EPSILON, SPECTRUM_SIZE, LogSpectrum, grayscale

FORMAT = "cqdkit-router"
VERSION = 1


@dataclass
class Expert:
    """One quality's model: a backbone, its input normalisation, and how to describe it."""

    architecture: str
    model: nn.Module
    normalizer: Normalizer
    info: dict[str, Any] = field(default_factory=dict)  # e.g. {"method": "a-cqd"}, saved in the JSON


class QualityRouter(nn.Module):
    """Route each image to the expert of its predicted quality.

    Args:
        qualities: one name per quality (e.g. ``["clean", "lowres"]``); quality ``k`` is served by
            ``experts[k]``.
        experts: the expert models, in the order of ``qualities``; all map ``(B, 3, S, S)`` to
            ``(B, num_classes)`` logits.
        num_classes: number of classes every expert predicts.
        image_size: side ``S`` of the square images the router takes.
        out_size, eps: the spectrum's side and logarithm offset (see :class:`LogSpectrum`).
        info: free-form JSON-able description saved with the router (class names, degradation specs...).

    The quality classifier starts at zero (every image goes to expert 0) until fitted with
    :func:`cqdkit.routing.fit.fit_quality_classifier` or :meth:`set_classifier`.

    Images are pixels 0..255 (uint8 or float), like every model wrapper of cqdkit takes them.
    """

    def __init__(
        self,
        qualities: Sequence[str],
        experts: Sequence[Expert],
        *,
        num_classes: int,
        image_size: int,
        out_size: int = SPECTRUM_SIZE,
        eps: float = EPSILON,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        qualities = [str(q) for q in qualities]
        if len(qualities) < 2:
            raise CqdkitError(f"a router needs at least two qualities, got {qualities}")
        if len(set(qualities)) != len(qualities):
            raise CqdkitError(f"quality names must be unique, got {qualities}")
        if len(experts) != len(qualities):
            raise CqdkitError(f"{len(qualities)} qualities {qualities} need as many experts, got {len(experts)}")
        self.qualities = qualities
        self.architectures = [expert.architecture for expert in experts]
        self.expert_info = [dict(expert.info) for expert in experts]
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.info = dict(info or {})
        self.spectrum = LogSpectrum(self.image_size, out_size, eps=eps)
        features = self.spectrum.num_features
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.classifier = nn.Linear(features, len(qualities))
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        self.experts = nn.ModuleList(expert.model for expert in experts)
        self.normalizers = nn.ModuleList(expert.normalizer for expert in experts)

    @property
    def classes(self) -> list[str] | None:
        """The class names in logit order, when given in ``info["classes"]``."""
        return self.info.get("classes")

    # -- quality -------------------------------------------------------------------------------

    def check_images(self, images: torch.Tensor) -> None:
        """Raise :class:`CqdkitError` unless ``images`` is a ``(B, 3, S, S)`` batch of pixels."""
        expected = (3, self.image_size, self.image_size)
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != expected:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise CqdkitError(f"the router expects images of shape (batch, {', '.join(map(str, expected))}), got {shape}")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, out_size**2)`` log-magnitude spectra of pixels 0..255 (computed on the [0, 1] scale)."""
        self.check_images(images)
        return self.spectrum(grayscale(images.float() / 255.0)).flatten(1)

    def quality_logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` scores of the K qualities."""
        return self.classify(self.features(images))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` quality scores of precomputed :meth:`features`."""
        return self.classifier((features - self.feature_mean) / self.feature_std)

    def predict_quality(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` index into :attr:`qualities` of each image's predicted quality."""
        return self.quality_logits(images).argmax(dim=1)

    def set_classifier(
        self, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> None:
        """Install a linear quality classifier ``weight @ ((features - mean) / std) + bias``."""
        k, d = len(self.qualities), self.spectrum.num_features
        shapes = {"weight": (weight, (k, d)), "bias": (bias, (k,)), "mean": (mean, (d,)), "std": (std, (d,))}
        for name, (tensor, shape) in shapes.items():
            if tuple(tensor.shape) != shape:
                raise CqdkitError(f"quality classifier {name} must have shape {shape}, got {tuple(tensor.shape)}")
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)
            self.feature_mean.copy_(mean)
            self.feature_std.copy_(std)

    # -- prediction ----------------------------------------------------------------------------

    def expert_logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(K, B, num_classes)``: every expert's logits for every image."""
        self.check_images(images)
        return torch.stack([expert(norm(images)).float() for expert, norm in zip(self.experts, self.normalizers)])

    def route(self, images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """``(B, num_classes)`` logits of expert ``quality[i]`` for image ``i`` (an oracle gives the truth)."""
        stacked = self.expert_logits(images)
        index = quality.long().view(1, -1, 1).expand(1, stacked.shape[1], stacked.shape[2])
        return torch.gather(stacked, 0, index)[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of each image's predicted-quality expert, for ``(B, 3, S, S)`` pixels 0..255."""
        return self.route(images, self.predict_quality(images))

    # -- files ---------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The JSON written next to the weights: everything :meth:`load` needs to rebuild the module."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "qualities": self.qualities,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "spectrum": {"out_size": self.spectrum.out_size, "eps": self.spectrum.eps},
            "experts": [
                {"quality": q, "architecture": arch, "mean": norm.mean, "std": norm.std, **info}
                for q, arch, norm, info in zip(self.qualities, self.architectures, self.normalizers, self.expert_info)
            ],
            "info": self.info,
        }

    def save(self, path: Path) -> None:
        """Write ``path`` (safetensors weights) and ``path`` with suffix ``.json`` (the description)."""
        save_model(Path(path), self, self.describe())

    @classmethod
    def load(cls, path: Path, *, manager: Any = None) -> QualityRouter:
        """Rebuild a router saved by :meth:`save` (in eval mode, on the CPU); never unpickles.

        Raises:
            DataError: a file is missing or unreadable, or the weights do not fit the description.
        """
        from ..files import read_regular_text
        from ..models import create_backbone
        from ..models.weights import read_state_dict
        from ..schema import check_router_description

        path = Path(path)
        meta_path = path.with_suffix(".json")
        try:
            meta = json.loads(read_regular_text(meta_path, "a router description"))
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read router description {meta_path}: {error}") from error
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{meta_path} is not a cqdkit router description (expected \"format\": \"{FORMAT}\")")
        if meta.get("version") != VERSION:
            raise DataError(f"{meta_path}: router format version {meta.get('version')!r}; this cqdkit reads {VERSION}")
        check_router_description(meta_path, meta)
        try:
            num_classes = int(meta["num_classes"])
            experts = []
            for entry in meta["experts"]:
                model = create_backbone(entry["architecture"], num_classes=num_classes, manager=manager)
                info = {k: v for k, v in entry.items() if k not in ("quality", "architecture", "mean", "std")}
                experts.append(Expert(entry["architecture"], model, Normalizer(entry["mean"], entry["std"]), info))
            spectrum = meta["spectrum"]
            router = cls(
                meta["qualities"], experts, num_classes=num_classes, image_size=int(meta["image_size"]),
                out_size=int(spectrum["out_size"]), eps=float(spectrum["eps"]), info=meta.get("info"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{meta_path}: malformed router description ({type(error).__name__}: {error})") from error
        state = read_state_dict(path)
        try:
            router.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise DataError(f"weights {path} do not match the router described in {meta_path}: {error}") from error
        return router.eval()
