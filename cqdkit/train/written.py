"""What a run or a table wrote that depends on its settings, checked before a report or an explanation reads
it: a run's ``config.json`` (every setting of its type, as :class:`~cqdkit.train.config.RunConfig` declares it)
and a table's ``table.json``. The other files a run writes are checked by :mod:`cqdkit.schema`; anything wrong
is one :class:`~cqdkit.errors.DataError` naming the file, the field, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from ..errors import CqdkitError, DataError
from ..schema import Fields, check_distillation, check_pipeline, image_size_limits, is_integer, number_rule
from .config import RunConfig, check_type, describe_type
from .table import GAP_ROW


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
    hints = typing.get_type_hints(RunConfig)
    for setting in dataclasses.fields(RunConfig):
        if setting.name in run.payload:
            annotation = hints[setting.name]
            try:
                check_type(setting.name, run.payload[setting.name], annotation, str(run.path))
            except CqdkitError:
                run.fail(setting.name, run.payload[setting.name],
                         f"{describe_type(annotation)} ({RunConfig.option_name(setting.name)})")
    low, high = image_size_limits()
    run.integer("image_size", low, high, none=True,
                what=f"an input size from {low} to {high} pixels (cqdkit's largest accepted image size is {high})")
    for key in ("epochs", "batch_size"):
        run.integer(key, 1, none=True)


# -- table.json -----------------------------------------------------------------------------------------------


def check_table(path: Path, payload: Any) -> None:
    """A ``cqdkit table``'s ``table.json``: its rows, degradations and seeds (non-empty lists of distinct
    values), each cell's mean, std and count per degradation and row, the accuracies of each seed, the
    settings."""
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
