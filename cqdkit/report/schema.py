"""What ``report``, ``explain``, ``export`` and the predictor read, checked before anything is drawn or exported.

Every file a run or a table wrote -- ``results.json``, ``config.json``, ``table.json``, ``log.jsonl``,
``model.json``, ``router.json`` -- is checked here for the structure and types the pages, figures and exports
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

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ..errors import DataError

ACCURACY = "an accuracy: a number in [0, 1] (NaN where the model cannot see that view)"
#: The scores of a model in ``results.json`` (beside its accuracies) and the values each takes.
NLL = "a negative log-likelihood: a number >= 0 (or NaN)"
#: A model's name in a run folder is the name of its sub-folder: one plain path component.
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def image_size_limits() -> tuple[int, int]:
    """The smallest and largest input size cqdkit accepts (``--image-size``)."""
    from ..train.config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

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


def check_config(path: Path, payload: Any) -> None:
    """A run's ``config.json``: the settings (``run``, each of its type, the image size within limits), the
    dataset's counts, the degradation pipeline and the distillation."""
    config = Fields(path, payload)
    run = config.object("run")
    if run is not None:
        check_run_settings(run)
    dataset = config.object("dataset")
    if dataset is not None:
        dataset.text("name", none=True)
        dataset.text("root", none=True)
        dataset.integer("classes", 1, none=True)
        for key in ("train", "val", "test", "unlabelled"):
            dataset.integer(key, 0, none=True)
        dataset.boolean("boxes", none=True)
        dataset.value("skipped", "a list of the samples left out", lambda v: isinstance(v, list), none=True)
    pipeline = config.object("pipeline")
    if pipeline is not None:
        check_pipeline(pipeline)
    distillation = config.object("distillation")
    if distillation is not None:
        check_distillation(distillation)
    environment = config.object("environment")
    if environment is not None:
        environment.text("precision", none=True)
    config.boolean("crop", none=True)


def check_run_settings(run: Fields) -> None:
    """``config.json``'s ``run``: every setting cqdkit knows has its type (:class:`~cqdkit.train.config.RunConfig`'s
    annotations), and the sizes a report or a predictor uses are within cqdkit's limits."""
    from ..train.config import RunConfig

    hints = typing.get_type_hints(RunConfig)
    for setting in dataclasses.fields(RunConfig):
        if setting.name in run.payload:
            annotation = hints[setting.name]
            if not _has_type(run.payload[setting.name], annotation):
                run.fail(setting.name, run.payload[setting.name],
                         f"{_describe_type(annotation)} ({RunConfig.option_name(setting.name)})")
    low, high = image_size_limits()
    run.integer("image_size", low, high, none=True,
                what=f"an input size from {low} to {high} pixels (cqdkit's largest accepted image size is {high})")
    for key in ("epochs", "batch_size"):
        run.integer(key, 1, none=True)


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


def _has_type(value: Any, annotation: Any) -> bool:
    """Whether a JSON value has the type of a setting annotated ``annotation`` (an int is a float; a bool is
    neither)."""
    if annotation is Any:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_has_type(value, kind) for kind in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    if origin is type(None):
        return value is None
    if origin is float:
        return is_number(value)
    if origin is int:
        return is_integer(value)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(origin, type) and isinstance(value, origin)


def _describe_type(annotation: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "an object",
             list: "a list of numbers", type(None): "null"}
    kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return " or ".join(names.get(typing.get_origin(kind) or kind, str(kind)) for kind in kinds)


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


# -- table.json -----------------------------------------------------------------------------------------------


def check_table(path: Path, payload: Any) -> None:
    """A ``cqdkit table``'s ``table.json``: its rows, degradations and seeds (non-empty lists of distinct
    values), each cell's mean, std and count per degradation and row, the accuracies of each seed, the
    settings."""
    from ..train.table import GAP_ROW

    table = Fields(path, payload)
    missing = [key for key in ("rows", "degradations", "seeds", "table") if key not in table.payload]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}; not written by this version of cqdkit?")
    distinct = lambda kind: lambda v: (isinstance(v, list) and v and all(kind(i) for i in v)  # noqa: E731
                                       and len(set(v)) == len(v))
    rows = table.value("rows", "a non-empty list of distinct row names", distinct(lambda i: isinstance(i, str)))
    degradations = table.value("degradations", "a non-empty list of distinct degradations",
                               distinct(lambda i: isinstance(i, str)))
    seeds = table.value("seeds", "a non-empty list of distinct seeds (integers >= 0)",
                        distinct(lambda i: is_integer(i) and i >= 0))
    cells = table.object("table", "an object of each degradation's cells", none=False)
    assert cells is not None
    for degradation in degradations:
        column = cells.object(degradation, "an object of the cells of each row", required=True, none=False)
        assert column is not None
        for row, stats in column.payload.items():
            if row not in rows:
                column.fail(row, stats, f"a cell of one of the rows ({', '.join(rows)})")
            if stats is None:
                continue
            cell = Fields(path, stats, column.name(row))
            if row == GAP_ROW:
                cell.number("mean", "a number (or NaN)", nan=True, required=True)
            else:
                cell.accuracy("mean", required=True)
            cell.number("std", "a standard deviation: a number >= 0 (or NaN)", low=0, nan=True, required=True)
            cell.integer("n", 1, len(seeds), what=f"a number of seeds from 1 to {len(seeds)}", required=True)
    for extra in cells.payload:
        if extra not in degradations:
            cells.fail(extra, cells.payload[extra], f"the cells of one of the degradations ({', '.join(degradations)})")
    raw = table.object("raw", "an object of each degradation's accuracies per seed")
    for degradation, by_row in (raw.payload.items() if raw is not None else ()):
        if degradation not in degradations:
            raw.fail(degradation, by_row, f"the accuracies of one of the degradations ({', '.join(degradations)})")
        column = raw.object(degradation, "an object of each row's accuracies per seed", none=False)
        for row, values in column.payload.items():
            column.value(row, f"a list of at most {len(seeds)} accuracies (numbers in [0, 1]) of row in {rows}",
                         lambda v, row=row: row in rows and isinstance(v, list) and len(v) <= len(seeds)
                         and all(number_rule(0, 1)(x) for x in v))
    settings = table.object("settings", "an object of each degradation's settings")
    for degradation in (settings.payload if settings is not None else ()):
        values = settings.object(degradation, "an object of the degradation's settings", none=False)
        values.integer("epochs", 1, none=True)
        pipeline = values.object("pipeline")
        if pipeline is not None:
            pipeline.text("spec", none=True)
            for op in pipeline.list_of_objects("ops", "a list of the pipeline's operations (objects)", none=True):
                op.text("name", none=True)
        for key in ("temperature", "lam"):
            values.number(key, "a finite number")
        for method, chosen in values.payload.items():
            if isinstance(chosen, dict) and method != "pipeline":
                strength = values.object(method)
                for key in ("temperature", "lam"):
                    strength.number(key, "a finite number")
                strength.text("chosen_by", none=True)
                strength.text("loss", none=True)
    distillation = table.object("distillation", "an object of each degradation's distillation per method and seed")
    for degradation in (distillation.payload if distillation is not None else ()):
        methods = distillation.object(degradation, "an object of each method's distillation per seed", none=False)
        for method in methods.payload:
            per_seed = methods.object(method, "an object of the distillation of each seed", none=False)
            for seed in per_seed.payload:
                check_distillation(per_seed.object(seed, "a distillation record (an object)", none=False))
    for key in ("teacher", "student", "dataset"):
        table.text(key, none=True)
    table.number("wall_seconds", "a number of seconds >= 0", low=0, none=True)
