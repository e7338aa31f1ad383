"""Reader for Stanford Cars, in either of its two published forms.

Devkit form::

    ROOT/cars_train/<fname>   ROOT/cars_test/<fname>
    ROOT/devkit/cars_meta.mat                       class_names (196 names)
    ROOT/devkit/cars_train_annos.mat                annotations: bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, fname
    ROOT/[devkit/]cars_test_annos_withlabels.mat    same fields, for the test images

Combined form::

    ROOT/cars_annos.mat    annotations: relative_im_path, bbox_x1 .. bbox_y2, class, test; class_names
    ROOT/car_ims/...

Classes are 1-based. Boxes are *inclusive* 1-based pixel corners ``(x1, y1, x2, y2)``; they are converted to
cqdkit's 0-based ``(x, y, width, height)`` as ``(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)``, so the
box covers exactly the annotated pixels, as a CUB box does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..files import open_regular, regular_file_problem
from .problems import Problems
from .records import ImageDataset, Record

BOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


def read_cars(root: str | os.PathLike[str], *, skip_bad: bool = False) -> ImageDataset:
    """Read a Stanford Cars folder (devkit or combined ``cars_annos.mat`` form).

    Raises:
        DataError: a missing or unreadable ``.mat`` file, a bad annotation (named by file and index) or a
            missing image; with ``skip_bad=True`` bad samples are left out and listed in ``problems``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found (expected a Stanford Cars folder)" if not root.exists() else
                        f"{root}: expected a Stanford Cars folder, found a file")
    problems = Problems(skip_bad)
    if (root / "cars_annos.mat").exists():  # a FIFO or folder by that name: refused when read
        train, test, classes = _read_combined(root, problems)
    elif (root / "devkit" / "cars_meta.mat").exists():
        train, test, classes = _read_devkit(root, problems)
    else:
        raise DataError(
            f"{root} is not a Stanford Cars folder: expected devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
            "cars_test_annos_withlabels.mat, cars_train/ and cars_test/ (or cars_annos.mat and car_ims/)"
        )
    return ImageDataset("cars", root, classes, train, test, True, problems.found)


def _read_combined(root: Path, problems: Problems) -> tuple[list[Record], list[Record], list[str]]:
    path = root / "cars_annos.mat"
    content = _load_mat(path)
    classes = _class_names(content, path)
    train: list[Record] = []
    test: list[Record] = []
    fields = ("relative_im_path", *BOX_FIELDS, "class", "test")
    listing = _Listing(problems)
    for where, values in _annotations(content, path, fields):
        if listing.again(str(values["relative_im_path"]), where):
            continue
        record = _record(root / str(values["relative_im_path"]), str(values["relative_im_path"]), values, where,
                         len(classes), problems)
        if record is None:
            continue
        try:
            in_test = _integer(values["test"], where, "test")
        except DataError as error:
            problems.report(str(error))
            continue
        (test if in_test else train).append(record)
    return listing.keep(train), listing.keep(test), classes


def _read_devkit(root: Path, problems: Problems) -> tuple[list[Record], list[Record], list[str]]:
    meta = root / "devkit" / "cars_meta.mat"
    classes = _class_names(_load_mat(meta), meta)
    splits: list[list[Record]] = []
    for folder, candidates in (
        ("cars_train", ("devkit/cars_train_annos.mat",)),
        ("cars_test", ("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat")),
    ):
        found = [root / c for c in candidates if (root / c).exists()]
        if not found:
            raise DataError(f"{root} is not a complete Stanford Cars folder: {' or '.join(candidates)} is missing")
        records = []
        listing = _Listing(problems)
        for where, values in _annotations(_load_mat(found[0]), found[0], (*BOX_FIELDS, "class", "fname")):
            name = str(values["fname"])
            if listing.again(f"{folder}/{name}", where):
                continue
            record = _record(root / folder / name, f"{folder}/{name}", values, where, len(classes), problems)
            if record is not None:
                records.append(record)
        splits.append(listing.keep(records))
    return splits[0], splits[1], classes


def _record(path: Path, image_id: str, values: dict[str, Any], where: str, num_classes: int,
            problems: Problems) -> Record | None:
    try:
        # .mat integers load as uint8/uint16: convert to Python ints before any arithmetic.
        x1, y1, x2, y2 = (_integer(values[name], where, name) for name in BOX_FIELDS)
        class_id = _integer(values["class"], where, "class")
    except DataError as error:
        problems.report(str(error))
        return None
    if not 1 <= class_id <= num_classes:
        problems.report(f"{where}: class {class_id} is out of range; expected 1 to {num_classes}")
        return None
    corners = f"box corners (x1={x1}, y1={y1}, x2={x2}, y2={y2})"
    if x2 < x1 or y2 < y1:
        problems.report(f"{where}: {corners} are inverted, so the box has zero size; expected x1 <= x2 and y1 <= y2 "
                        "(inclusive 1-based pixels)")
        return None
    if x1 < 1 or y1 < 1:
        problems.report(f"{where}: {corners} start outside the image; expected x1 >= 1 and y1 >= 1 "
                        "(inclusive 1-based pixels)")
        return None
    box = problems.check_box((x1 - 1.0, y1 - 1.0, x2 - x1 + 1.0, y2 - y1 + 1.0), where)
    if box is None:
        return None
    if not path.exists():
        problems.report(f"{where}: image file {path} is missing")
        return None
    problem = regular_file_problem(path, "an image file")
    if problem:
        problems.report(f"{where}: {problem}")
        return None
    return Record(image_id, path, class_id - 1, box, where)


class _Listing:
    """The images one annotation file lists: a second annotation of one is reported (even with the same
    values), and the image is left out -- which annotation would be right?"""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.first: dict[str, str] = {}
        self.twice: set[str] = set()

    def again(self, image_id: str, where: str) -> bool:
        """Whether ``image_id`` was listed before (reported); else remember it."""
        if image_id not in self.first:
            self.first[image_id] = where
            return False
        self.twice.add(image_id)
        index = self.first[image_id].rsplit(" ", 1)[-1]
        self.problems.report(f"{where}: image {image_id} is listed twice (first as annotation {index}); "
                             "expected one annotation per image")
        return True

    def keep(self, records: list[Record]) -> list[Record]:
        return [record for record in records if record.id not in self.twice]


def _load_mat(path: Path) -> dict[str, Any]:
    import scipy.io

    with open_regular(path, "a MATLAB file") as file:
        try:
            return scipy.io.loadmat(file, squeeze_me=True, struct_as_record=True)
        except Exception as error:  # scipy raises many types (ValueError, TypeError, MatReadError, OSError)
            raise DataError(f"{path}: cannot read the MATLAB file ({type(error).__name__}: {error})") from None


def _class_names(content: dict[str, Any], path: Path) -> list[str]:
    if "class_names" not in content:
        raise DataError(f"{path}: expected a 'class_names' variable (a cell array of names)")
    return [str(name) for name in np.atleast_1d(content["class_names"])]


def _annotations(content: dict[str, Any], path: Path, fields: tuple[str, ...]):
    """``(where, {field: value})`` for each element of the ``annotations`` struct array."""
    annotations = content.get("annotations")
    if annotations is None or annotations.dtype.names is None:
        raise DataError(f"{path}: expected a struct array 'annotations' with fields {', '.join(fields)}")
    missing = [f for f in fields if f not in annotations.dtype.names]
    if missing:
        raise DataError(f"{path}: 'annotations' lacks the field(s) {', '.join(missing)}; expected {', '.join(fields)}")
    for index, element in enumerate(np.atleast_1d(annotations), 1):
        yield f"{path} annotation {index}", {name: element[name] for name in fields}


def _integer(value: Any, where: str, name: str) -> int:
    try:
        number = np.asarray(value).item()
        if isinstance(number, float) and not number.is_integer():
            raise ValueError
        return int(number)
    except (ValueError, TypeError):
        raise DataError(f"{where}: field {name} must be an integer, got {value!r}") from None
