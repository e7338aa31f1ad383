"""A trained model for new images: eval mode, the run's preprocessing, class names.

From a finished run folder, or from an :class:`~cqdkit.train.experiment.Experiment` in a notebook::

    >>> import cqdkit
    >>> student = cqdkit.load_predictor("runs/tps")                     # doctest: +SKIP
    >>> student.predict(["bird.jpg", "car.png"]).names                   # doctest: +SKIP
    ['Laysan_Albatross', 'Audi_A5']
    >>> experiment = cqdkit.Experiment(cqdkit.RunConfig(degrade="tps"), "runs/notebook")   # doctest: +SKIP
    >>> experiment.predictor("cqd").predict(images, degrade=True)        # doctest: +SKIP

``predict`` takes image files, ``H x W x 3`` (or ``H x W``, ``H x W x 4``) ``uint8`` arrays or PIL images,
one or a list. Each image becomes the model's input as the run made its views: stretched to the run's size
(its object box cropped first when the run cropped and a box is given). ``degrade=True`` applies the run's
degradation as well, making the z view exactly as the test set does for the same seed
(``experiment.test_set.seed_of(i)`` is test image ``i``'s); give real low-quality images as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from .errors import CqdkitError, DataError
from .files import read_regular_text
from .images import load_image, pil_to_rgb
from .models.preprocessing import Normalizer

#: What ``predict`` takes: a file, an image array, a PIL image.
ImageInput = Union[str, "os.PathLike[str]", np.ndarray, Any]


@dataclass(frozen=True)
class Predictions:
    """What a model says about a batch of images, in the order given."""

    logits: np.ndarray  # (N, classes), float32
    classes: tuple[str, ...]  # the run's class names, index -> name

    @property
    def labels(self) -> np.ndarray:
        """The predicted class index of each image."""
        return self.logits.argmax(axis=1)

    @property
    def names(self) -> list[str]:
        """The predicted class name of each image."""
        return [self.classes[label] for label in self.labels]

    @property
    def probabilities(self) -> np.ndarray:
        """``(N, classes)`` softmax of the logits."""
        return torch.from_numpy(self.logits).double().softmax(dim=1).float().numpy()


class Predictor:
    """A trained model in eval mode behind its run's preprocessing (see the module's docstring).

    Args:
        model: the backbone, taking what ``normalizer`` makes of 0..255 pixels.
        normalizer: the run's input normalisation of this model.
        maker: the run's degradation pipeline (its size, crop and ops).
        classes: the class names, index order.
        in_chans: the model's input channels (only RGB models take images here).
        reporter: shows a progress bar on a terminal (the default reporter: stderr).
    """

    def __init__(self, model: nn.Module, normalizer: Normalizer, maker: Any, classes: Sequence[str], *,
                 in_chans: int = 3, reporter: Any = None) -> None:
        from .reporting import Reporter

        self.model = model.eval()
        self.normalizer = normalizer
        self.maker = maker
        self.classes = tuple(classes)
        self.in_chans = in_chans
        self.reporter = reporter if reporter is not None else Reporter.default()

    @property
    def image_size(self) -> int:
        return int(self.maker.size)

    def predict(self, images: ImageInput | Sequence[ImageInput], *,
                boxes: Sequence[Sequence[float] | None] | None = None, degrade: bool = False,
                seeds: Sequence[int] | None = None, batch_size: int = 64) -> Predictions:
        """The model's predictions for ``images`` (one or a list).

        Args:
            boxes: one object box ``(x, y, w, h)`` in pixels (or None) per image, for runs that crop to it
                or degradations that need it (``localization``).
            degrade: feed the run's z view of each image (its degradation applied), not the image itself.
            seeds: the degradation's seed per image (default 0 for all); the test set's are
                ``experiment.test_set.seed_of(i)``.

        Raises:
            DataError: a file that cannot be read, or an image of a kind that is not understood.
            CqdkitError: a model that takes more than 3 channels (a teacher with privileged channels).
        """
        if self.in_chans != 3:
            raise CqdkitError(f"this model takes {self.in_chans} input channels ({', '.join(self.maker.x_channels)}); "
                              "predict feeds RGB images, so only RGB models (the students, and teachers without "
                              "privileged channels) can predict here")
        batch = [images] if _is_one_image(images) else list(images)
        boxes = list(boxes) if boxes is not None else [None] * len(batch)
        seeds = list(seeds) if seeds is not None else [0] * len(batch)
        for name, values in (("boxes", boxes), ("seeds", seeds)):
            if len(values) != len(batch):
                raise CqdkitError(f"{len(values)} {name} for {len(batch)} images; give one per image")
        views = []
        for index, (image, box, seed) in enumerate(zip(batch, boxes, seeds)):
            try:
                views.append(self._view(image, box, seed, degrade))
            except DataError as error:
                raise DataError(f"image {index} ({_describe(image)}): {error}") from None
        device = next(self.model.parameters()).device
        self.model.eval()
        self.normalizer.to(device)
        outputs = []
        steps = range(0, len(views), batch_size)
        with self.reporter.progress("predict", len(steps)) as advance, torch.inference_mode():
            for start in steps:
                pixels = torch.from_numpy(np.stack(views[start:start + batch_size])).permute(0, 3, 1, 2)
                outputs.append(self.model(self.normalizer(pixels.to(device))).float().cpu())
                advance(1)
        logits = torch.cat(outputs).numpy() if outputs else np.zeros((0, len(self.classes)), np.float32)
        return Predictions(logits, self.classes)

    def _view(self, image: ImageInput, box: Sequence[float] | None, seed: int, degrade: bool) -> np.ndarray:
        from .degradations.pipeline import make_x

        pixels = _as_array(image)
        if degrade:
            return self.maker(pixels, box, seed=seed)[1]
        source, normalised_box = self.maker.source(pixels, box, seed=seed)
        return make_x(source, normalised_box, self.maker.size, self.maker.crop and normalised_box is not None)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], model: str | None = None, *, reporter: Any = None) -> Predictor:
        """The model ``model`` (a method: ``"a"``, ``"b"``, ``"cqd"``...; default the run's student) of a finished
        run folder, from its ``model.safetensors`` and ``model.json`` (its preprocessing recorded there)."""
        from .degradations import PairMaker
        from .export import find_model, load_trained

        path = find_model(Path(run_dir), model)
        if path.name == "router.safetensors":
            raise CqdkitError(f"{run_dir} is a multires run; load one of its experts (model='<quality>/<method>')")
        exportable = load_trained(path)
        description = exportable.description
        saved = _read_model_json(path.with_suffix(".json"))  # checked by load_trained
        pipeline = saved.get("pipeline")
        if not isinstance(pipeline, dict):
            raise DataError(f"{path.with_suffix('.json')}: field pipeline must be the degradation pipeline the "
                            f"model was trained with (spec, size, crop), got {json.dumps(pipeline)[:80]}")
        maker = PairMaker(pipeline["spec"], size=pipeline["size"], crop=pipeline["crop"])
        classifier = exportable.module
        return cls(classifier.backbone, classifier.normalizer, maker, description["classes"],
                   in_chans=exportable.input_shape[0], reporter=reporter)


def load_predictor(run_dir: str | os.PathLike[str], model: str | None = None) -> Predictor:
    """:meth:`Predictor.from_run`: a finished run's model, ready for new images."""
    return Predictor.from_run(run_dir, model)


def _is_one_image(images: Any) -> bool:
    return isinstance(images, (str, os.PathLike, np.ndarray)) or hasattr(images, "getbands")  # a PIL image


def _describe(image: ImageInput) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"{type(image).__name__} of shape {getattr(image, 'shape', getattr(image, 'size', '?'))}"


def _as_array(image: ImageInput) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if hasattr(image, "getbands"):
        from PIL import ImageOps

        return pil_to_rgb(ImageOps.exif_transpose(image))  # upright, as every image file cqdkit reads
    if isinstance(image, np.ndarray):
        return image
    raise DataError(f"cannot predict on a {type(image).__name__}; expected an image file, a uint8 array "
                    "(H x W x 3, H x W or H x W x 4) or a PIL image")


def _read_model_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(read_regular_text(path, "a model description"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the model description ({error})") from None
