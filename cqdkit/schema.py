"""What ``report``, ``explain``, ``export`` and the predictor read, checked before anything is drawn or exported.

Every file a run wrote -- ``results.json``, ``log.jsonl``, ``model.json``, ``router.json`` -- is checked here
(``config.json`` and ``table.json``, whose checks need the run's settings, in :mod:`cqdkit.train.written`) for the structure and types the pages, figures and exports
rely on: accuracies are numbers in [0, 1] (NaN where a model cannot see a view), the models are a non-empty
table, every name one key refers to is listed, a model's class names are as many as its classes, its image
size lies within cqdkit's limits, its mean and std are one finite number per channel, ... Anything else is
one :class:`~cqdkit.errors.DataError` naming the file, the field, the value and what was expected::

    >>> check_results(Path("runs/tps/results.json"), {"models": {"b": {"test_x": 0.5, "test_z": "0.4"}},
    ...                                               "method": "b"})
    Traceback (most recent call last):
    ...
    cqdkit.errors.DataError: runs/tps/results.json: field models.b.test_z must be an accuracy: a number in [0, 1] (NaN where the model cannot see that view), got "0.4"

Nothing here imports torch or matplotlib.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .errors import DataError
from .files import read_regular_text
from .images import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

ACCURACY = "an accuracy: a number in [0, 1] (NaN where the model cannot see that view)"
#: The scores of a model in ``results.json`` (beside its accuracies) and the values each takes.
NLL = "a negative log-likelihood: a number >= 0 (or NaN)"
#: A model's name in a run folder is the name of its sub-folder: one plain path component.
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (NaN allowed, as cqdkit writes it)."""
    try:
        payload = json.loads(read_regular_text(path, "a JSON file"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{path}: cannot read it as JSON ({error})") from error
    if not isinstance(payload, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


def read_model_description(path: Path) -> dict[str, Any]:
    """A saved model's ``model.json``, checked (:func:`check_model_description`)."""
    return check_model_description(path, read_json(path))


def image_size_limits() -> tuple[int, int]:
    """The smallest and largest input size cqdkit accepts (``--image-size``)."""
    return MIN_IMAGE_SIZE, MAX_IMAGE_SIZE


def show(value: Any, limit: int = 80) -> str:
    """``value`` as JSON on one line, cut to ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_.+\-→/ ]+", key) else json.dumps(key)


def is_number(value: Any) -> bool:
    """A JSON number (``true`` and ``false`` are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number_rule(low: float | None = None, high: float | None = None, *, nan: bool = False,
                infinite: bool = False, above: bool = False) -> Callable[[Any], bool]:
    """Whether a value is a number within ``[low, high]`` (``(low, high]`` when ``above``), NaN and infinities
    only where allowed."""

    def valid(value: Any) -> bool:
        if not is_number(value):
            return False
        if math.isnan(value):
            return nan
        if math.isinf(value) and not infinite:
            return False
        if low is not None and (value <= low if above else value < low):
            return False
        return high is None or value <= high

    return valid


is_accuracy = number_rule(0, 1, nan=True)


class Fields:
    """One JSON object of a file, read key by key; every failure names the file, the field, the value and what
    was expected."""

    def __init__(self, path: Path, payload: Any, where: str = "", expected: str = "a JSON object", *,
                 line: int | None = None) -> None:
        self.path, self.where, self.line = Path(path), where, line
        if not isinstance(payload, dict):
            if where:
                fail(self.path, where, payload, expected)
            raise DataError(f"{self.path}: expected {expected}, got {show(payload)}")
        self.payload: dict[str, Any] = payload

    def name(self, key: str) -> str:
        name = f"{self.where}.{_key(key)}" if self.where else _key(key)
        return name if self.line is None else f"{name} (line {self.line})"

    def fail(self, key: str, value: Any, expected: str) -> NoReturn:
        fail(self.path, self.name(key), value, expected)

    def value(self, key: str, expected: str, valid: Callable[[Any], bool], *, required: bool = False,
              none: bool = False) -> Any:
        """``payload[key]`` when ``valid`` (or None where it may be missing or null)."""
        if key not in self.payload:
            if required:
                raise DataError(f"{self.path}: field {self.name(key)} is missing; expected {expected} "
                                "(not written by this version of cqdkit?)")
            return None
        value = self.payload[key]
        if value is None and none:
            return None
        if not valid(value):
            self.fail(key, value, expected + (" or null" if none else ""))
        return value

    def text(self, key: str, **options: Any) -> str | None:
        return self.value(key, "a string", lambda v: isinstance(v, str), **options)

    def boolean(self, key: str, **options: Any) -> bool | None:
        return self.value(key, "true or false", lambda v: isinstance(v, bool), **options)

    def integer(self, key: str, low: int, high: int | None = None, what: str = "", **options: Any) -> int | None:
        expected = what or (f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}")
        return self.value(key, expected, lambda v: is_integer(v) and low <= v and (high is None or v <= high),
                          **options)

    def number(self, key: str, expected: str, **rule: Any) -> float | None:
        options = {name: rule.pop(name) for name in ("required", "none") if name in rule}
        return self.value(key, expected, number_rule(**rule), **options)

    def accuracy(self, key: str, **options: Any) -> float | None:
        return self.value(key, ACCURACY, is_accuracy, **options)

    def strings(self, key: str, **options: Any) -> list[str] | None:
        return self.value(key, "a list of strings",
                          lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v), **options)

    def object(self, key: str, expected: str = "a JSON object", *, required: bool = False,
               none: bool = True) -> Fields | None:
        """The object at ``key`` as :class:`Fields` (None where it is missing, or null and ``none``)."""
        value = self.value(key, expected, lambda v: isinstance(v, dict), required=required, none=none)
        return None if value is None else Fields(self.path, value, self.name(key))

    def list_of_objects(self, key: str, expected: str, **options: Any) -> list[Fields]:
        values = self.value(key, expected, lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v),
                            **options)
        return [Fields(self.path, item, f"{self.name(key)}[{k}]") for k, item in enumerate(values or [])]


def fail(path: Path, where: str, value: Any, expected: str) -> NoReturn:
    raise DataError(f"{path}: field {where} must be {expected}, got {show(value)}")


# -- results.json --------------------------------------------------------------------------------------------


def check_results(path: Path, payload: Any) -> None:
    """A run's ``results.json``: ``models`` (a non-empty table of each model's scores), ``method`` (one of them),
    ``baseline`` and ``gain`` (the student's test z accuracy minus the baseline's), the run's facts and its
    distillation."""
    results = Fields(path, payload)
    for key in ("models", "method"):
        if key not in results.payload:
            raise DataError(f"{path}: missing {key}; not written by this version of cqdkit?")
    models = results.value("models", "an object of each model's scores",
                           lambda v: isinstance(v, dict) and all(isinstance(s, dict) for s in v.values()))
    if not models:
        results.fail("models", models, "a non-empty object of each model's scores (the run lists no model)")
    for name, scores in models.items():
        if not MODEL_NAME.match(name) or name in (".", ".."):
            results.fail("models", name, "named by model folders (a, b, a-cqd, ...): letters, digits, '-', "
                                         "'_', '.', '+'")
        model = Fields(path, scores, results.name("models") + "." + _key(name))
        for key in ("test_x", "test_z"):
            model.accuracy(key, required=True)
        for key in ("test_x_nll", "test_z_nll", "test_x_calibrated_nll", "test_z_calibrated_nll"):
            model.number(key, NLL, low=0, nan=True, infinite=True)
        model.number("images_per_second", "a speed in images per second: a number >= 0", low=0, nan=True,
                     none=True)
        model.number("distill_gradient_ratio", "a ratio of gradients: a number >= 0", low=0, nan=True, none=True)
    listed = f"one of the models it lists ({', '.join(models)})"
    method = results.value("method", f"the student's method, {listed}", lambda v: isinstance(v, str) and v in models)
    baseline = results.value("baseline", f"the baseline's method, {listed}",
                             lambda v: isinstance(v, str) and v in models, none=True)
    gain = results.number("gain", "a difference of accuracies: a number in [-1, 1] (or NaN)", low=-1, high=1,
                          nan=True)
    if gain is not None and not math.isnan(gain):
        if baseline is None:
            results.fail("gain", gain, "given with the baseline it is measured against (no field baseline)")
        student, base = models[method]["test_z"], models[baseline]["test_z"]
        if math.isfinite(student) and math.isfinite(base) and abs(gain - (student - base)) > 1e-6:
            results.fail("gain", gain, f"models.{method}.test_z - models.{baseline}.test_z = "
                                       f"{student!r} - {base!r} = {student - base!r}")
    for key in ("teacher", "student", "degrade", "dataset", "out"):
        results.text(key, none=True)
    results.number("wall_seconds", "a number of seconds >= 0", low=0, none=True)
    distillation = results.object("distillation")
    if distillation is not None:
        check_distillation(distillation)


def check_distillation(distillation: Fields) -> None:
    """A run's ``distillation`` record (``results.json`` and ``config.json``): how the student was distilled."""
    numbers = "a number, a list of numbers"
    for key in ("method", "loss", "chosen_by"):
        distillation.text(key, none=True)
    distillation.boolean("distillation_helps", none=True)
    for key in ("temperature", "lambda", "logit_weight"):
        distillation.value(key, numbers, lambda v: is_number(v) or (isinstance(v, list) and all(map(is_number, v))),
                           none=True)
    distillation.integer("classes", 1, none=True)
    for term in distillation.list_of_objects("terms", "a list of the distillation terms (objects)", none=True):
        term.text("spec", required=True)
        term.text("name", none=True)
        for key in ("temperature", "lambda", "logit_weight"):
            term.number(key, "a number", none=True, nan=True, infinite=False)


# -- config.json ----------------------------------------------------------------------------------------------


def check_pipeline(pipeline: Fields, size: int | None = None) -> None:
    """A degradation pipeline's description (``config.json``'s ``pipeline``, ``model.json``'s): its spec, its
    size (``size`` when given: the model's input size), crop and ops."""
    low, high = image_size_limits()
    pipeline.text("spec", required=True)
    if size is None:
        pipeline.integer("size", low, high, required=True,
                         what=f"an image size from {low} to {high} pixels (cqdkit's largest accepted image size is "
                              f"{high})")
    else:
        pipeline.value("size", f"{size}, the model's image_size", lambda v: is_integer(v) and v == size,
                       required=True)
    pipeline.boolean("crop", required=True)
    pipeline.boolean("augment", none=True)
    pipeline.strings("x_channels", none=True)
    for op in pipeline.list_of_objects("ops", "a list of the pipeline's operations (objects)", none=True):
        op.text("name", required=True)


# -- log.jsonl ------------------------------------------------------------------------------------------------

#: The numbers of a ``log.jsonl`` line the report draws, and the values each takes.
LOG_NUMBERS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "loss": ("a number (or NaN)", number_rule(nan=True, infinite=True)),
    "ce": ("a number >= 0 (or NaN)", number_rule(0, nan=True, infinite=True)),
    "distill": ("a number (or NaN)", number_rule(nan=True, infinite=True)),
    "distill_kl": ("a number (or NaN)", number_rule(nan=True, infinite=True)),
    "train_acc": (ACCURACY, is_accuracy),
    "val_acc": (ACCURACY, is_accuracy),
    "lr": ("a learning rate: a number >= 0", number_rule(0)),
    "images": ("a number of images >= 0", lambda v: is_integer(v) and v >= 0),
    "seconds": ("a number of seconds >= 0", number_rule(0)),
}


def check_log(path: Path, epochs: list[Any]) -> None:
    """A model's ``log.jsonl`` (one object per line): epochs numbered 1, 2, ... in order, each drawn number of
    its type."""
    previous = 0
    for number, epoch in enumerate(epochs, start=1):
        line = Fields(path, epoch, line=number)
        value = line.value("epoch", f"an epoch number after {previous} (the lines in order)",
                           lambda v: is_integer(v) and v > previous, required=True)
        previous = value
        for key, (expected, valid) in LOG_NUMBERS.items():
            line.value(key, expected, valid, none=True)


# -- model.json -----------------------------------------------------------------------------------------------


def check_model_description(path: Path, payload: Any, *, names: bool = True) -> dict[str, Any]:
    """A saved model's ``model.json``: its architecture, classes (as many names as ``num_classes``; not checked
    without ``names``, see :func:`check_class_names`), input channels, image size (within cqdkit's limits), one
    finite mean and std (> 0) per channel, and the degradation pipeline it was trained with (its size the image
    size). Returns the payload."""
    model = Fields(path, payload, expected="a JSON object (a cqdkit model description)")
    model.value("architecture", "a backbone's name", lambda v: isinstance(v, str) and v.strip() != "", required=True)
    model.integer("num_classes", 1, what="a number of classes: an integer >= 1", required=True)
    channels = model.integer("in_chans", 1, 64, what="a number of input channels: an integer from 1 to 64")
    channels = 3 if channels is None else channels
    low, high = image_size_limits()
    size = model.integer("image_size", low, high, required=True,
                         what=f"an image size from {low} to {high} pixels (cqdkit's largest accepted image size is "
                              f"{high})")
    if names:
        check_class_names(path, payload)
    for key, positive in (("mean", False), ("std", True)):
        expected = "finite numbers above 0" if positive else "finite numbers"
        model.value(key, f"a list of {channels} {expected} (one per channel)",
                    lambda v, positive=positive: isinstance(v, list) and len(v) == channels and all(
                        number_rule(0, above=True)(x) if positive else number_rule()(x) for x in v), required=True)
    model.value("channels", f"a list of {channels} channel names",
                lambda v: isinstance(v, list) and len(v) == channels and all(isinstance(c, str) for c in v))
    model.text("method", none=True)
    pipeline = model.object("pipeline", none=True)
    if pipeline is not None:
        check_pipeline(pipeline, size=size)
    return payload


def check_class_names(path: Path, payload: dict[str, Any]) -> None:
    """``model.json``'s ``classes``: one name per class (``num_classes``, already checked)."""
    classes = payload["num_classes"]
    Fields(path, payload).value("classes", f"a list of {classes} class names (num_classes is {classes})",
                                lambda v: isinstance(v, list) and len(v) == classes
                                and all(isinstance(c, str) for c in v), required=True)


def check_router_description(path: Path, payload: Any) -> None:
    """A multires ``router.json``: as many experts as qualities, its classes and image size like a model's."""
    router = Fields(path, payload, expected="a JSON object (a cqdkit router description)")
    classes = router.integer("num_classes", 1, what="a number of classes: an integer >= 1", required=True)
    low, high = image_size_limits()
    router.integer("image_size", low, high, required=True,
                   what=f"an image size from {low} to {high} pixels (cqdkit's largest accepted image size is {high})")
    qualities = router.strings("qualities", required=True)
    router.value("experts", f"a list of {len(qualities)} experts (one per quality)",
                 lambda v: isinstance(v, list) and len(v) == len(qualities), required=True)
    info = router.object("info")
    if info is not None:
        info.value("classes", f"a list of {classes} class names (num_classes is {classes})",
                   lambda v: isinstance(v, list) and len(v) == classes and all(isinstance(c, str) for c in v),
                   none=True)


